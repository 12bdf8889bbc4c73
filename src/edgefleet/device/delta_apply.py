"""Applying a delta on the device, as one pipeline (device/delta.py drives it):

1. `reference`: the source image's layers a delta refers to, rebuilt from the engine's data
   root (tar-split segments + the overlay2 `diff` files, each file's size checked) into one
   buffer, without hashing: a wrong byte there cannot pass unnoticed, because every layer
   decoded against it must hash to its diffId (when one does not, `diagnose` re-reads the
   source layers with their CRC-64s and diffIds to name the damaged file);
2. `archive`: a `docker save` archive streamed into `POST /images/load` while a worker thread
   decodes the frames (zstd against the reference) and a second one hashes them on the way.
   Each layer's diffId is checked when its last byte is decoded; the archive's end (padding,
   `manifest.json`, end-of-archive blocks) is sent only once every layer has passed, so a
   layer that fails aborts the upload: the engine never sees a complete archive, loads
   nothing, and the caller removes anything the engine might list under the image id."""

from __future__ import annotations

import asyncio
import hashlib
import json
import mmap
import os
import queue
import tarfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from edgefleet.device.delta_layers import OldFiles, Prefixes, layer_chunks, tar_split
from edgefleet.engine.delta import (
    DeltaError,
    Header,
    LayerPlan,
    check_layer,
    prefix_of,
)
from edgefleet.engine.storage import DataRoot

_CHUNK = 1 << 20
_QUEUE = 4
"""Decoded chunks (1 MiB from zstd, up to 4 MiB copied from old files) buffered in each of the
two queues between the decoder and the upload (at most 32 MiB in all, as with 16 chunks of
1 MiB before, with a quarter of the hand-overs for copied files)."""
_WAIT_S = 120.0
"""Longest wait for the decoder's next chunk before giving up (bounds a stuck thread)."""
_MAP_MIN = 256 << 10
"""Files from this size on are mapped rather than read into the reference."""
_LAYER_END = object()
_DONE = object()


def reference(root: DataRoot, src_id: str, diff_ids: tuple[str, ...]) -> bytes:
    """The source image's layers `diff_ids` as their tar streams, concatenated."""
    from edgefleet.engine.tarsplit import FILE_ENTRY, entries, relative_name

    layers = {x.diff_id: x for x in root.image(src_id).layers}
    parts: list[bytes | mmap.mmap] = []
    maps: list[mmap.mmap] = []
    try:
        for diff_id in diff_ids:
            layer = layers.get(diff_id)
            if layer is None:
                raise DeltaError(f"the source image has no layer {diff_id}")
            base = os.fsencode(layer.diff_dir)
            for entry in entries(tar_split(root, layer.chain_id)):
                if entry.type != FILE_ENTRY:
                    parts.append(entry.payload)
                    continue
                if entry.size == 0:
                    continue
                path = os.path.join(base, relative_name(entry.name))
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                except OSError as exc:
                    raise DeltaError(f"source layer {diff_id}: cannot read {os.fsdecode(path)} "
                                     f"({exc.strerror})") from None
                try:
                    parts.append(_content(fd, entry.size, diff_id, path, maps))
                finally:
                    os.close(fd)
        return b"".join(parts)  # the one copy: from the page cache (mapped files) into it
    finally:
        for m in maps:
            m.close()



def _content(fd: int, size: int, diff_id: str, path: bytes,
             maps: list[mmap.mmap]) -> bytes | mmap.mmap:
    """A file's content: mapped when large (joined without an extra copy), else read."""
    got = os.fstat(fd).st_size
    if got != size:
        raise DeltaError(f"source layer {diff_id}: {os.fsdecode(path)} has {got} bytes, "
                         f"its layer records {size}")
    if size >= _MAP_MIN:
        m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        maps.append(m)
        return m
    data = os.read(fd, size)
    while len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            raise DeltaError(f"source layer {diff_id}: {os.fsdecode(path)} is shorter than "
                             f"its layer records")
        data += more
    return data


def build_prefixes(out: Prefixes, root: DataRoot, src_id: str) -> None:
    """Rebuild each reference (in the order of `out`: the first layer's first) and resolve
    its future with its zstd prefix (the rebuilt bytes are copied into it and let go), so
    the first layer can be decoded while the next reference is rebuilt. Runs in a worker
    thread."""
    for ids, fut in out.items():
        try:
            fut.set_result(prefix_of(reference(root, src_id, ids)))
        except BaseException as exc:
            for rest in out.values():
                if not rest.done():
                    rest.set_exception(exc)
            return


def diagnose(root: DataRoot, src_id: str, diff_ids: tuple[str, ...]) -> str:
    """Why a reference may be wrong: the first source layer whose files fail their CRC-64 or
    whose stream does not hash to its diffId; "" when all of them check out."""
    from edgefleet.engine.tarsplit import LayerMismatch, layer_digest

    try:
        layers = {x.diff_id: x for x in root.image(src_id).layers}
        for diff_id in diff_ids:
            layer = layers[diff_id]
            got = layer_digest(tar_split=tar_split(root, layer.chain_id),
                               diff_dir=layer.diff_dir)
            if got != diff_id:
                return f"source layer {diff_id} on disk rebuilds to {got}"
    except (LayerMismatch, OSError, KeyError, ValueError) as exc:
        return f"the source image on disk is damaged: {exc}"
    return ""


class Decoder:
    """Decodes a delta's frames in one worker thread and hashes them in a second one (zstd and
    hashlib release the GIL: both run beside the upload), through bounded queues (see the
    module doc). `next()` gives the upload a chunk, `_LAYER_END` once a layer matched its
    diffId, or raises why not; `stop()` ends the threads early (the upload failed)."""

    def __init__(self, *, path: Path, offset: int, header: Header,
                 prefixes: Prefixes, files: OldFiles) -> None:
        """`prefixes`: the references' zstd prefixes, each waited for when a layer needs
        it (the upload starts meanwhile); `files`: what "tar" plans copy."""
        self.decoded: queue.Queue[object] = queue.Queue(maxsize=_QUEUE)
        self.q: queue.Queue[object] = queue.Queue(maxsize=_QUEUE)
        self.stopped = threading.Event()
        self.decode_s = 0.0
        self._threads = [
            threading.Thread(target=self._decode, name="delta-decode", daemon=True,
                             args=(path, offset, header, prefixes, files)),
            threading.Thread(target=self._hash, name="delta-hash", daemon=True,
                             args=(header,))]
        for thread in self._threads:
            thread.start()

    def _put(self, q: queue.Queue[object], item: object) -> bool:
        while not self.stopped.is_set():
            try:
                q.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue[object]) -> object:
        while not self.stopped.is_set():
            try:
                return q.get(timeout=0.5)
            except queue.Empty:
                continue
        return _DONE

    def _decode(self, path: Path, offset: int, header: Header,
                prefixes: Prefixes, files: OldFiles) -> None:
        try:
            t = time.perf_counter()
            with open(path, "rb") as fh:
                fh.seek(offset)
                for plan in header.layers:
                    if plan.kind == "reuse":
                        continue
                    for chunk in layer_chunks(plan, fh=fh, prefixes=prefixes, files=files):
                        if not self._put(self.decoded, chunk):
                            return
                    if not self._put(self.decoded, _LAYER_END):
                        return
                if fh.read(1):
                    raise DeltaError("the delta has bytes after its last frame")
            self.decode_s = time.perf_counter() - t
            self._put(self.decoded, _DONE)
        except BaseException as exc:  # handed on to the upload, which raises it
            self._put(self.decoded, exc)

    def _hash(self, header: Header) -> None:
        """Each new layer's chunks on to the upload, hashed; its diffId checked at its end."""
        for plan in (p for p in header.layers if p.kind != "reuse"):
            sha = hashlib.sha256()
            total = 0
            while True:
                item = self._get(self.decoded)
                if isinstance(item, bytes):
                    sha.update(item)
                    total += len(item)
                elif item is _LAYER_END:
                    try:
                        check_layer(plan, sha, total)
                    except DeltaError as exc:
                        self._put(self.q, exc)
                        return
                    self._put(self.q, item)
                    break
                if not self._put(self.q, item) or not isinstance(item, bytes):
                    return  # stopped, an error handed on, or frames that end early
        self._put(self.q, self._get(self.decoded))  # _DONE, or why not

    def next(self) -> object:
        try:
            item = self.q.get(timeout=_WAIT_S)
        except queue.Empty:
            raise DeltaError(f"decoding the delta stalled for {_WAIT_S:.0f} s") from None
        if isinstance(item, BaseException):
            raise item
        return item

    async def next_async(self) -> object:
        """`next()` for the event loop: what is ready at once, else waited for in a thread
        (a thread hop per chunk cost more than the chunk while the decoder is ahead)."""
        try:
            item = self.q.get_nowait()
        except queue.Empty:
            return await asyncio.to_thread(self.next)
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self.stopped.set()
        for thread in self._threads:
            thread.join(timeout=5)


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % 512)


def _names(header: Header) -> tuple[str, list[str], bytes]:
    """The image id's hex, the layers' file names and manifest.json of the image's archive."""
    dest_hex = header.dest.removeprefix("sha256:")
    names = [f"{p.diff_id.removeprefix('sha256:')}/layer.tar" for p in header.layers]
    manifest = json.dumps([{"Config": f"{dest_hex}.json", "RepoTags": None,
                            "Layers": names}]).encode()
    return dest_hex, names, manifest


def config_archive(header: Header) -> bytes:
    """A `docker save` archive of the image without any layer file: loads only when the engine
    has every layer (registers the image config, by id, untagged)."""
    dest_hex, _, manifest = _names(header)
    return (_tar_header(f"{dest_hex}.json", len(header.config)) + header.config
            + _padding(len(header.config)) + _tar_header("manifest.json", len(manifest))
            + manifest + _padding(len(manifest)) + b"\0" * 1024)


async def archive(header: Header, decoder: Decoder,
                  times: dict[str, float]) -> AsyncIterator[bytes]:
    """A `docker save` archive of the image: the config, each new layer as the decoder makes
    it (its diffId checked before the next entry), then manifest.json. Layers the engine has
    are listed only (`docker load` opens a layer file only when it lacks that layer).
    `times["sent"]` is set when the last byte is handed over."""
    dest_hex, names, manifest = _names(header)
    yield _tar_header(f"{dest_hex}.json", len(header.config)) + header.config \
        + _padding(len(header.config))
    for plan, name in zip(header.layers, names, strict=True):
        if plan.kind == "reuse":
            continue
        yield _tar_header(name, plan.size)
        async for chunk in _layer(plan, decoder):
            yield chunk
        yield _padding(plan.size)
    item = await decoder.next_async()
    if item is not _DONE:
        raise DeltaError("the delta's frames do not match its header")
    times["sent"] = time.perf_counter()
    yield _tar_header("manifest.json", len(manifest)) + manifest + _padding(len(manifest)) \
        + b"\0" * 1024


async def _layer(plan: LayerPlan, decoder: Decoder) -> AsyncIterator[bytes]:
    """The layer's chunks as the decoder hands them over; ends once it matched its diffId
    (the decoder raises here when it did not)."""
    total = 0
    while True:
        item = await decoder.next_async()
        if item is _LAYER_END:
            break
        if not isinstance(item, bytes):
            raise DeltaError("the delta's frames do not match its header")
        total += len(item)
        yield item
    if total != plan.size:  # (checked by the decoder; kept here next to the tar header)
        raise DeltaError(f"layer {plan.diff_id}: {total} bytes sent, {plan.size} announced")
