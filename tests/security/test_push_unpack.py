"""Finding 1 of issue 11: a push must never write outside its own work directory. Each upload
is pushed by an ordinary user to a real `edgefleet server run` process; afterwards nothing
beside the server's data dir was created or changed, the answer is a 400 naming the member
(never a server path), and the push's work directory is gone."""

from __future__ import annotations

import json
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.security import hostile
from tests.security.conftest import SecServer, push_raw

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
