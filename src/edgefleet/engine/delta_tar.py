"""Tar-aware delta plans (issue 19): a new layer told as "these bytes, then file F of old layer
L, then these bytes, ..." when most of it is files the old image has byte for byte (a rebuild
with new timestamps, one source file changed beside large unchanged ones).

A device then applies it without rebuilding any reference: it reads the unchanged files
straight from its data root (page cache) between the few literal bytes (tar headers, padding,
changed files), which arrive as one small zstd frame. A zstd frame against the old layers
(engine/delta.py) costs about as few bytes, but the device must first copy the old layers
into zstd's reference, twice, before the first byte comes out: the larger part of a delta's
time on a fast link.

Plan ops, in stream order: `("data", "", "", n)`: the next n bytes of the frame;
`("copy", diffId, name, n)`: the content of regular file `name` (as the old layer's tar names
it) of old layer `diffId`, n bytes. Ops `("ref", diffId, name, n)` (first, adding no bytes)
name old files whose contents, concatenated, are the frame's zstd reference: the old versions
of the files that changed, so an edit inside a large file still costs about the edit. The
result is checked against the layer's diffId as any other; a device accepts a copy or a ref
only of a file its own tar-split of that layer lists with that size."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable

Op = tuple[str, str, str, int]
MIN_COPY = 16 << 10
"""Smaller files go as literal bytes (a copy costs an op and a file open on the device)."""
MAX_LITERAL = 4 << 20
"""A plan is used when its literal bytes are at most this, or 5% of the layer."""
MAX_REF = 64 << 20
"""At most this much of old files as the literal bytes' reference."""


def _files(stream: bytes) -> list[tuple[str, int, int]]:
    """(name, content offset, size) of each regular file of a tar stream, in order; [] when it
    is not a plain tar (sparse members)."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
        for member in tar:
            if member.issparse():
                return []
            if member.isreg() and member.size:
                out.append((member.name, member.offset_data, member.size))
    return out


def tar_plan(data: bytes, old: dict[str, bytes]) -> tuple[list[Op], bytes, bytes] | None:
    """The ops telling `data` (a layer's tar stream) from the old layers `old` (their tar
    streams by diffId), the literal bytes and their reference; None when `data` is not a
    plain tar or too little of it is old files."""
    view = memoryview(data)
    index: dict[bytes, tuple[str, str]] = {}
    by_name: dict[str, tuple[str, int, int]] = {}
    try:
        for diff_id, stream in old.items():
            mem = memoryview(stream)
            for name, at, size in _files(stream):
                by_name.setdefault(name, (diff_id, at, size))
                if size >= MIN_COPY:
                    index.setdefault(hashlib.sha256(mem[at:at + size]).digest(),
                                     (diff_id, name))
        new = _files(data)
    except (tarfile.TarError, EOFError, ValueError):
        return None
    refs: list[Op] = []
    ref = bytearray()
    ops: list[Op] = []
    literal = bytearray()
    pos = 0

    def take(end: int) -> None:
        if end > pos:
            literal.extend(view[pos:end])
            if ops and ops[-1][0] == "data":
                ops[-1] = ("data", "", "", ops[-1][3] + end - pos)
            else:
                ops.append(("data", "", "", end - pos))

    for name, at, size in new:
        found = index.get(hashlib.sha256(view[at:at + size]).digest()) if size >= MIN_COPY \
            else None
        if found is None:
            was = by_name.get(name)
            if was is not None and len(ref) + was[2] <= MAX_REF:
                refs.append(("ref", was[0], name, was[2]))
                ref.extend(memoryview(old[was[0]])[was[1]:was[1] + was[2]])
            continue
        take(at)
        ops.append(("copy", found[0], found[1], size))
        pos = at + size
    take(len(data))
    if len(literal) > max(MAX_LITERAL, len(data) // 20):
        return None
    return refs + ops, bytes(literal), bytes(ref)


def check_ops(ops: tuple[Op, ...], size: int) -> str:
    """Why these ops cannot tell a layer of `size` bytes ("" when they can)."""
    total = 0
    for op in ops:
        if len(op) != 4 or op[0] not in ("data", "copy", "ref") or op[3] < 0:
            return f"bad op {op!r}"
        total += op[3] if op[0] != "ref" else 0
    if total != size:
        return f"ops add up to {total} bytes, not {size}"
    # a device holds the literal bytes and their reference in memory: bounded (well above
    # what a server makes: MAX_LITERAL or 5%, MAX_REF)
    if literal_size(ops) > max(4 * MAX_LITERAL, size // 10):
        return f"{literal_size(ops)} literal bytes is more than a tar plan may hold"
    if sum(op[3] for op in ops if op[0] == "ref") > MAX_REF:
        return f"its reference is larger than {MAX_REF} bytes"
    return ""


def literal_size(ops: tuple[Op, ...]) -> int:
    return sum(op[3] for op in ops if op[0] == "data")


FileOpener = Callable[[str, str, int], int]
"""(old layer diffId, file name, size) → an open file descriptor of that file's content."""
