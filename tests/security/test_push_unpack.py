"""Finding 1 of issue 11: a push must never write outside its own work directory. Each upload
is pushed by an ordinary user to a real `edgefleet server run` process; afterwards nothing
beside the server's data dir was created or changed, the answer is a 400 naming the member
(never a server path), and the push's work directory is gone.

Uploads in other compressions than gzip (bzip2, xz, zstd, zip, a gzip or zstd inside the gzip)
get a 400 naming the format and the accepted ones, decided from the first bytes: a gzip bomb
inside a gzip is never expanded."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.security import hostile
from tests.security.conftest import MAX_PROJECT_MIB, SecServer, push_raw

REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
ABSOLUTE = Path(f"/tmp/efsec-{uuid.uuid4().hex}")

HOSTILE = {
    # CVE-2025-4517: from data/builds/<push>/, three levels up is the sandbox
    "long-symlink-chain-plant": (hostile.long_symlink_chain(
        up=3, name="planted.txt", content=b"pwned\n"), "a/b/c/d"),
    "long-symlink-chain-overwrite": (hostile.long_symlink_chain(
        up=3, name="victim.txt", content=b"pwned\n"), "a/b/c/d"),
    "dotdot-name": (hostile.tar_of([("../../../planted.txt", b"x", REG, "")]),
                    "../../../planted.txt"),
    "absolute-name": (hostile.tar_of([(str(ABSOLUTE), b"x", REG, "")]), str(ABSOLUTE)),
    "symlink-then-write-through": (hostile.tar_of([
        ("out", b"", SYM, "../../.."), ("out/planted.txt", b"x", REG, "")]), "out"),
    "absolute-symlink": (hostile.tar_of([
        ("root", b"", SYM, str(ABSOLUTE.parent)), (f"root/{ABSOLUTE.name}", b"x", REG, "")]),
        "root"),
    # by text `here/..` is the project itself; followed, it is the directory above
    "symlink-via-symlink": (hostile.tar_of([
        ("here", b"", SYM, "."), ("u1", b"", SYM, "here/.."), ("u2", b"", SYM, "u1/.."),
        ("u3", b"", SYM, "u2/.."), ("u3/planted.txt", b"x", REG, "")]), "u1"),
    "hardlink-to-outside": (hostile.tar_of([
        ("hl", b"", LNK, "../../../victim.txt"), ("hl", b"pwned\n", REG, "")]), "hl"),
    "device-node": (hostile.tar_of([("null", b"", tarfile.CHRTYPE, "")]), "null"),
    "fifo": (hostile.tar_of([("pipe", b"", tarfile.FIFOTYPE, "")]), "pipe"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_upload_writes_nothing_outside(secserver: SecServer, case: str) -> None:
    body, member = HOSTILE[case]
    r = push_raw(secserver, body)
    assert r.status_code == 400, (r.status_code, r.text[:500])
    detail = r.json()["detail"]
    assert member in detail, detail
    assert str(secserver.box) not in detail and str(secserver.data_dir) not in detail, detail
    assert secserver.outside_data_dir() == secserver.baseline
    assert not ABSOLUTE.exists()
    assert secserver.push_workdirs() == []


def test_links_inside_the_project_are_kept(secserver: SecServer) -> None:
    """Links that stay inside the project are accepted: the upload gets as far as the build
    (which the engine refuses: the Dockerfile has an unknown instruction)."""
    body = hostile.tar_of([
        ("docs", b"", DIR, ""), ("docs/a.txt", b"hello", REG, ""),
        ("docs/b.txt", b"", LNK, "docs/a.txt"), ("latest", b"", SYM, "docs"),
        ("sub", b"", DIR, ""), ("sub/up", b"", SYM, "../docs/a.txt")])
    r = push_raw(secserver, body)
    assert r.status_code == 200, r.text
    events = [json.loads(line) for line in r.text.splitlines()]
    assert events[0]["type"] == "release" and events[-1]["type"] == "done"
    assert "BOGUS" in events[-1]["error"].upper(), events[-1]
    assert secserver.outside_data_dir() == secserver.baseline
    assert secserver.push_workdirs() == []


ACCEPTED = "a tar archive, plain or gzipped once"
PROJECT = hostile.tar_of([])  # a Dockerfile only


@pytest.mark.parametrize(("name", "body", "named"), [
    ("bzip2", bz2.compress(PROJECT), "bzip2-compressed"),
    ("xz", lzma.compress(PROJECT), "xz-compressed"),
    ("zstd", hostile.zstd_frame(PROJECT), "zstd-compressed"),
    ("zstd-in-gzip", gzip.compress(hostile.zstd_frame(PROJECT)), "a zstd stream inside a gzip"),
    ("gzip-in-gzip", gzip.compress(gzip.compress(PROJECT)), "a gzip stream inside a gzip"),
    ("zip", b"PK\x03\x04" + bytes(600), "zip-compressed"),
])
def test_other_compressions_are_refused_naming_the_accepted_formats(
        secserver: SecServer, name: str, body: bytes, named: str) -> None:
    r = push_raw(secserver, body)
    assert r.status_code == 400, (name, r.status_code, r.text[:300])
    detail = r.json()["detail"]
    assert named in detail and ACCEPTED in detail and "tar -czf" in detail, detail
    assert secserver.push_workdirs() == []
    assert secserver.outside_data_dir() == secserver.baseline


def test_garbage_is_refused_naming_the_accepted_formats(secserver: SecServer) -> None:
    r = push_raw(secserver, b"not an archive at all " * 100)
    assert r.status_code == 400, r.text[:300]
    assert "not a usable tar archive" in r.json()["detail"]
    assert ACCEPTED in r.json()["detail"]


def test_a_gzip_bomb_inside_a_gzip_is_not_expanded(secserver: SecServer) -> None:
    inner = hostile.gzip_bomb(members=MAX_PROJECT_MIB * 2)  # past the cap, one layer down
    body = gzip.compress(inner, 9)
    assert len(body) < 2**20
    before = secserver.rss_kib("VmRSS")
    r = push_raw(secserver, body)
    assert r.status_code == 400, r.text[:300]  # expanded, it would be a 413 (the cap)
    assert "a gzip stream inside a gzip" in r.json()["detail"]
    assert secserver.rss_kib("VmRSS") - before < 64 * 1024
    assert secserver.push_workdirs() == []
