"""Reassemble a layer's tar stream from its `tar-split.json.gz` and its overlay2 `diff`
directory, the way the engine does for `docker save` and pushes, and compute its diffId.

tar-split (vbatts/tar-split, storage packer) is gzip'd NDJSON, one entry per line:
- `{"type": 2, "payload": <base64>, "position": n}`: raw bytes of the stream (tar headers,
  padding, the end-of-archive blocks), written out as they are;
- `{"type": 1, "name" | "name_raw": <path>, "size": n, "payload": <base64 crc64>}`: a file's
  content, read from `diff/<path>`. Entries with size 0 (directories, symlinks, hard links,
  whiteouts `.wh.<name>`, opaque markers `.wh..wh..opq`, empty files) read nothing: their
  headers are in the segments, so overlay2's char-device whiteouts and `trusted.overlay.opaque`
  xattrs never need translating. The payload is CRC-64 (ISO polynomial, Go's `hash/crc64`) of
  the content, big-endian; a mismatch names the file.

`layer_digest` can hand every file, once checked and still open, to a hook (the preload copy
copies it from that descriptor at once, so a layer is verified and copied in one walk).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anycrc

_CRC64 = anycrc.Model("CRC64-GO-ISO")
_CHUNK = 1 << 20
FILE_ENTRY = 1
SEGMENT_ENTRY = 2


class LayerMismatch(ValueError):
    """A layer's content on disk does not reassemble to its recorded tar stream."""

    def __init__(self, *, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}" if file else reason)
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    """One tar-split entry: a raw segment or a file whose content lives in the diff dir."""

    type: int
    payload: bytes
    name: bytes = b""
    size: int = 0


def entries(path: Path) -> Iterator[Entry]:
    """The entries of a `tar-split.json.gz`, in stream order."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                raw = json.loads(line)
                payload = base64.b64decode(raw.get("payload") or b"")
                name = (base64.b64decode(raw["name_raw"]) if raw.get("name_raw")
                        else str(raw.get("name") or "").encode("utf-8", "surrogateescape"))
                kind = int(raw.get("type", 0))
                if kind not in (FILE_ENTRY, SEGMENT_ENTRY):
                    raise LayerMismatch(file="", reason=f"{path} line {lineno}: unknown entry "
                                                        f"type {kind}")
                yield Entry(type=kind, payload=payload, name=name, size=int(raw.get("size", 0)))
    except (OSError, EOFError, ValueError, json.JSONDecodeError) as exc:
        if isinstance(exc, LayerMismatch):
            raise
        raise LayerMismatch(file="", reason=f"cannot read {path}: {exc}") from None


FileHook = Callable[[bytes, int], None]
"""Called with a file's normalised path and its still-open descriptor once its content has
passed its CRC-64 (e.g. to copy that file right away)."""


def relative_name(name: bytes) -> bytes:
    """A tar-split entry's path, normalised (no `.`, no empty parts) and kept inside the layer."""
    parts = [p for p in name.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise LayerMismatch(file=os.fsdecode(name), reason="path escapes the layer")
    return b"/".join(parts)


def layer_digest(*, tar_split: Path, diff_dir: Path,
                 progress: Callable[[int], None] | None = None,
                 on_file: FileHook | None = None,
                 sink: Callable[[bytes | memoryview], object] | None = None,
                 sink_files: bool = True, crc: bool = True) -> str:
    """`sha256:<hex>` of the layer's reassembled tar stream; raises LayerMismatch naming the
    file whose content is missing, of the wrong size, or fails its CRC-64. `on_file` gets each
    file that passed its CRC-64, before it is closed; `sink` gets the stream itself, in order
    (a file's chunks before its CRC-64 is checked: a sink's output counts only once this
    returns), or with `sink_files=False` only the segments between files (`on_file` then
    writes each file's content, e.g. by a kernel copy from its descriptor). With `crc=False`
    the CRC-64s are not computed (the sha256 of the whole stream still covers every byte; a
    caller that finds it wrong can run this again with them to name the file)."""
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    base = os.fsencode(diff_dir)
    for entry in entries(tar_split):
        if entry.type == SEGMENT_ENTRY:
            digest.update(entry.payload)
            if sink is not None:
                sink(entry.payload)
            continue
        if entry.size == 0:
            continue
        shown = os.fsdecode(entry.name)
        rel = relative_name(entry.name)
        path = os.path.join(base, rel)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise LayerMismatch(file=shown, reason=f"cannot read ({exc.strerror})") from None
        crc64: int | None = None
        left = entry.size
        try:
            if os.fstat(fd).st_size != entry.size:
                raise LayerMismatch(file=shown, reason=f"size {os.fstat(fd).st_size}, "
                                                       f"recorded {entry.size}")
            while left:
                n = os.readv(fd, [view[:min(left, _CHUNK)]])
                if n == 0:
                    raise LayerMismatch(file=shown, reason="file shorter than recorded")
                chunk = view[:n]
                digest.update(chunk)
                if sink is not None and sink_files:
                    sink(chunk)
                if crc:
                    crc64 = int(_CRC64.calc(chunk) if crc64 is None
                                else _CRC64.calc(chunk, crc64))
                left -= n
                if progress is not None:
                    progress(n)
            if crc and (crc64 or 0).to_bytes(8, "big") != entry.payload:
                raise LayerMismatch(file=shown, reason="content differs from the layer's "
                                                       "record (CRC-64 mismatch)")
            if on_file is not None:
                on_file(rel, fd)
        finally:
            os.close(fd)
    return "sha256:" + digest.hexdigest()
