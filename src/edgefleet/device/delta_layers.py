"""A new layer's stream on the device, for both delta transports (device/delta_apply.py,
device/delta_blobs.py): zstd against its reference, or a "tar" plan's literal bytes between
the old files it copies (engine/delta_tar.py), which `OldFiles` opens only when the device's
own tar-split of that layer lists them."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Literal, overload

from edgefleet.engine.delta import DeltaError, LayerPlan, decompress_layer, literal_bytes
from edgefleet.engine.storage import DataRoot

_CHUNK = 4 << 20
"""Reads of old files and literal bytes (each chunk is handed between threads and queued)."""
_WAIT_S = 120.0
"""Longest wait for a reference being rebuilt."""
SLICE_MIN = 64 << 10
"""Files at least this large go to the registry transport as `FileSlice`s (sent by the
kernel); smaller ones are read (a sendfile per small file costs more than the copy)."""
Prefixes = dict[tuple[str, ...], "Future[object]"]
"""The zstd prefix of each reference (by its layers' diffIds), resolved once rebuilt."""


class OldFiles:
    """The source image's files "tar" plans copy (engine/delta_tar.py): a name the delta gives
    is opened only when the device's own tar-split of that layer lists it with that size."""

    def __init__(self, root: DataRoot, src_id: str) -> None:
        self.root = root
        self.layers = {x.diff_id: x for x in root.image(src_id).layers}
        self._known: dict[str, dict[bytes, int]] = {}
        self._lock = threading.Lock()

    def open(self, diff_id: str, name: str, size: int) -> int:
        from edgefleet.engine.tarsplit import FILE_ENTRY, LayerMismatch, entries, relative_name

        layer = self.layers.get(diff_id)
        if layer is None:
            raise DeltaError(f"the source image has no layer {diff_id}")
        try:
            with self._lock:
                files = self._known.get(diff_id)
                if files is None:
                    files = {relative_name(e.name): e.size for e in entries(
                        tar_split(self.root, layer.chain_id)) if e.type == FILE_ENTRY}
                    self._known[diff_id] = files
            rel = relative_name(os.fsencode(name))
        except LayerMismatch as exc:
            raise DeltaError(f"source layer {diff_id}: {exc}") from None
        if files.get(rel) != size:
            raise DeltaError(f"source layer {diff_id} has no file {name!r} of {size} bytes")
        path = os.path.join(os.fsencode(layer.diff_dir), rel)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise DeltaError(f"source layer {diff_id}: cannot read {name} ({exc.strerror})"
                             ) from None
        if os.fstat(fd).st_size != size:
            os.close(fd)
            raise DeltaError(f"source layer {diff_id}: {name} is not {size} bytes on disk")
        return fd

    def read(self, diff_id: str, name: str, size: int) -> bytes:
        fd = self.open(diff_id, name, size)
        try:
            return _read_all(fd, size)
        finally:
            os.close(fd)


class FileSlice:
    """`count` bytes of an open file from `offset`, for the registry transport to send with
    sendfile (device/delta_registry.py; h11 frames it by its `len`). Owns its file: closed
    when sent, or when dropped."""

    __slots__ = ("count", "file", "offset")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.file = open(fd, "rb", buffering=0, closefd=True)  # noqa: SIM115
        self.offset = offset
        self.count = count

    def __len__(self) -> int:
        return self.count

    def close(self) -> None:
        self.file.close()

    def dup(self) -> FileSlice:
        """Another slice of the same bytes with its own descriptor (for the hashing thread)."""
        return FileSlice(os.dup(self.file.fileno()), self.offset, self.count)

    def read_into(self, view: memoryview, sink: Callable[[memoryview], object]) -> None:
        """Read the slice through `view` (a buffer), each piece to `sink`; then close."""
        with self.file:
            at, left = self.offset, self.count
            while left:
                n = os.preadv(self.file.fileno(), [view[:min(left, len(view))]], at)
                if n == 0:
                    raise DeltaError("a source file ended early")
                sink(view[:n])
                at += n
                left -= n


def _read_all(fd: int, size: int) -> bytes:
    parts = []
    while size:
        chunk = os.read(fd, min(size, _CHUNK))
        if not chunk:
            raise DeltaError("a source file ended early")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


@overload
def layer_chunks(plan: LayerPlan, *, fh: IO[bytes], prefixes: Prefixes, files: OldFiles,
                 slices: Literal[False] = False) -> Iterator[bytes]: ...
@overload
def layer_chunks(plan: LayerPlan, *, fh: IO[bytes], prefixes: Prefixes, files: OldFiles,
                 slices: bool) -> Iterator[bytes | FileSlice]: ...
def layer_chunks(plan: LayerPlan, *, fh: IO[bytes], prefixes: Prefixes,
                 files: OldFiles, slices: bool = False) -> Iterator[bytes | FileSlice]:
    """A new layer's tar stream in chunks, NOT hashed (the caller checks its diffId), from its
    frame (the next `plan.length` bytes of `fh`): zstd against its reference (waited for),
    or, for a "tar" plan, its literal bytes between the old files it copies (with `slices`,
    each copied file of `SLICE_MIN` bytes or more as a `FileSlice`, not read)."""
    if plan.kind != "tar":
        prefix = prefixes[plan.ref].result(timeout=_WAIT_S)
        yield from decompress_layer(plan=plan, prefix=prefix, fh=fh)
        return
    ref = b"".join(files.read(d, name, size) for kind, d, name, size in plan.ops
                   if kind == "ref")
    data = memoryview(literal_bytes(plan=plan, fh=fh, ref=ref))
    del ref
    pos = 0
    for kind, diff_id, name, size in plan.ops:
        if kind == "ref":
            continue
        if kind == "data":
            for at in range(pos, pos + size, _CHUNK):
                yield bytes(data[at:min(at + _CHUNK, pos + size)])
            pos += size
            continue
        fd = files.open(diff_id, name, size)
        if slices and size >= SLICE_MIN:
            yield FileSlice(fd, 0, size)
            continue
        try:
            left = size
            while left:
                chunk = os.read(fd, min(left, _CHUNK))
                if not chunk:
                    raise DeltaError(f"source layer {diff_id}: {name} ended early")
                left -= len(chunk)
                yield chunk
        finally:
            os.close(fd)


def tar_split(root: DataRoot, chain_id: str) -> Path:
    return (root.image_dir / "layerdb" / "sha256" / chain_id.removeprefix("sha256:")
            / "tar-split.json.gz")
