"""What the loopback registry of a delta apply serves (device/delta_registry.py): the
manifest, the carrier's image config and the layers' blobs, each made by a worker thread as
the engine asks for it.

- The manifest (schema 2) lists the layers UNCOMPRESSED (digest = diffId, media type
  `rootfs.diff.tar`): the engine needs no gunzip. A layer the engine has under a prefix of the
  chain it already knows by a registry digest (`distribution/` metadata in its data root) is
  listed by that digest, so the engine finds it ("Already exists") instead of fetching it.
- Each new layer's blob is decoded from the delta (zstd against the rebuilt reference) in a
  worker thread when the engine asks for it, and hashed in a second one; layers requested in
  parallel decode in parallel. A layer the device had (listed again because a new layer lies
  below it) is rebuilt from its tar-split. A blob's last chunk is handed on only once it
  hashed to its digest.
- Old files of `SLICE_MIN` bytes or more go to the response as `FileSlice`s (sent by
  sendfile): a new layer's hashing thread reads them on its own descriptor; an old layer's
  files are hashed (read once) just before they are handed on.
- The image config is a CARRIER's: the target's with a comment added (another image id),
  see device/delta_registry.py for why."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgefleet.device.delta_layers import SLICE_MIN, FileSlice, OldFiles, Prefixes, layer_chunks
from edgefleet.engine.delta import (
    DeltaError,
    Header,
    LayerPlan,
    check_layer,
)
from edgefleet.engine.storage import DataRoot

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar"
GZIP_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_WAIT_S = 120.0
"""Longest wait for a worker's next chunk (bounds a stuck thread)."""
_DEPTH = 8
"""Chunks (1 MiB each, or file slices) in flight between a worker thread and the response."""
_HASH_DEPTH = 64
"""Chunks or file slices waiting for the hashing thread of a new layer."""
OK = object()
"""Put after a blob's last chunk once it hashed to its digest."""


class Pipe:
    """Chunks from a worker thread to the event loop, at most `_DEPTH` in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.q: asyncio.Queue[object] = asyncio.Queue()
        self.room = threading.Semaphore(_DEPTH)
        self.stopped = threading.Event()

    def put(self, item: object) -> bool:
        """From the thread; False once the reader stopped."""
        while not self.stopped.is_set():
            if self.room.acquire(timeout=0.5):
                try:
                    self.loop.call_soon_threadsafe(self.q.put_nowait, item)
                except RuntimeError:  # the loop is closed
                    return False
                return True
        return False

    def drop(self) -> None:
        """Stop the thread; close the file slices it queued and nobody will send."""
        self.stopped.set()
        while not self.q.empty():
            item = self.q.get_nowait()
            if isinstance(item, FileSlice):
                item.close()

    async def get(self) -> object:
        try:
            item = await asyncio.wait_for(self.q.get(), _WAIT_S)
        except TimeoutError:
            raise DeltaError(f"rebuilding a layer stalled for {_WAIT_S:.0f} s") from None
        self.room.release()
        return item


Producer = Callable[[Pipe], None]
"""Runs in a worker thread: puts the blob's chunks, then `OK` once it hashed to its digest,
or an exception."""


@dataclass(frozen=True)
class Blob:
    size: Callable[[], int]
    produce: Producer


def carrier_config(config: bytes) -> bytes:
    """The target's image config with a comment added: the same layers, another image id."""
    doc = json.loads(config)
    doc["comment"] = f"{doc.get('comment') or ''} (edgefleet delta carrier)".strip()
    return json.dumps(doc, separators=(",", ":")).encode()


def manifest(config: bytes, layers: list[tuple[str, str, int]]) -> bytes:
    """A schema-2 manifest of the config and the layers (media type, digest, size)."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "size": len(config),
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
        "layers": [{"mediaType": t, "size": s, "digest": d} for t, d, s in layers]},
        separators=(",", ":")).encode()


def known_digest(root: DataRoot, diff_id: str) -> str | None:
    """A registry digest the engine maps to this diffId (it pulled the layer as that blob),
    or None."""
    base = root.image_dir / "distribution"
    try:
        entries = json.loads((base / "v2metadata-by-diffid" / "sha256"
                              / diff_id.removeprefix("sha256:")).read_text())
        for entry in entries:
            digest = str(entry["Digest"])
            path = base / "diffid-by-digest" / "sha256" / digest.removeprefix("sha256:")
            if path.read_text().strip() == diff_id:
                return digest
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def new_layer(plan_index: int, header: Header, path: Path, offset: int,
              prefixes: Prefixes, files: OldFiles) -> Blob:
    """The blob of a new layer: its frame (at `offset` in the delta file) decoded against the
    reference in this worker thread, and hashed in a second one (zstd and hashlib release the
    GIL), which hands on `OK` only once the layer hashed to its diffId. The old files a "tar"
    plan copies go to the response as `FileSlice`s (sent by the kernel), which the hashing
    thread reads on its own descriptor."""
    plan = header.layers[plan_index]

    def produce(pipe: Pipe) -> None:
        hashed: queue.Queue[bytes | FileSlice | None] = queue.Queue(maxsize=_HASH_DEPTH)
        hasher = threading.Thread(target=_hash, args=(plan, hashed, pipe), daemon=True,
                                  name="delta-hash")
        hasher.start()
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                for chunk in layer_chunks(plan, fh=fh, prefixes=prefixes, files=files,
                                          slices=True):
                    if not _put(hashed, chunk.dup() if isinstance(chunk, FileSlice)
                                else chunk, pipe) or not pipe.put(chunk):
                        _close(chunk)
                        return
            _put(hashed, None, pipe)
        except BaseException as exc:  # handed to the response, which is cut short
            pipe.put(exc)
        finally:
            if not pipe.stopped.is_set():
                _put(hashed, None, pipe)

    return Blob(size=lambda: plan.size, produce=produce)


def _put(q: queue.Queue[bytes | FileSlice | None], item: bytes | FileSlice | None,
         pipe: Pipe) -> bool:
    """Queue for the hashing thread (bounded: a slice holds a descriptor); False once the
    response stopped (the item closed)."""
    while not pipe.stopped.is_set():
        try:
            q.put(item, timeout=0.5)
            return True
        except queue.Full:
            continue
    _close(item)
    return False


def _close(item: object) -> None:
    if isinstance(item, FileSlice):
        item.close()


def _hash(plan: LayerPlan, chunks: queue.Queue[bytes | FileSlice | None], pipe: Pipe) -> None:
    sha = hashlib.sha256()
    total = 0
    view = memoryview(bytearray(1 << 20))
    while not pipe.stopped.is_set():
        try:
            chunk = chunks.get(timeout=0.5)
        except queue.Empty:
            continue
        if chunk is None:
            break
        if isinstance(chunk, FileSlice):
            try:
                chunk.read_into(view, sha.update)
            except (OSError, DeltaError) as exc:
                pipe.put(DeltaError(f"reading a source file of layer {plan.diff_id}: {exc}"))
                return
        else:
            sha.update(chunk)
        total += len(chunk)
    else:
        return
    try:
        check_layer(plan, sha, total)
        pipe.put(OK)
    except DeltaError as exc:
        pipe.put(exc)


def old_layer(root: DataRoot, src_id: str, diff_id: str) -> Blob:
    """The blob of a layer the device has: its tar stream rebuilt from its tar-split. Each
    file is hashed first (read once), then goes to the response as a `FileSlice` (sent by the
    kernel) when it is large; the stream's last bytes (the end-of-archive blocks) go only
    once the whole stream hashed to the diffId."""
    from edgefleet.engine.tarsplit import FILE_ENTRY, entries, layer_digest

    layer = next(x for x in root.image(src_id).layers if x.diff_id == diff_id)
    tar_split = (root.image_dir / "layerdb" / "sha256" / layer.chain_id.removeprefix("sha256:")
                 / "tar-split.json.gz")

    def size() -> int:
        return sum(e.size if e.type == FILE_ENTRY else len(e.payload)
                   for e in entries(tar_split))

    def produce(pipe: Pipe) -> None:
        buf = bytearray()

        def flush() -> None:
            if buf:
                if not pipe.put(bytes(buf)):
                    raise DeltaError("the engine stopped reading")
                buf.clear()

        def sink(data: bytes | memoryview) -> None:  # the segments between files
            buf.extend(data)
            if len(buf) >= 1 << 20:
                flush()

        def on_file(rel: bytes, fd: int) -> None:  # hashed already, still open
            size = os.fstat(fd).st_size
            if size < SLICE_MIN:
                data = os.pread(fd, size, 0)
                if len(data) != size:
                    raise DeltaError(f"source layer {diff_id}: {os.fsdecode(rel)} changed")
                sink(data)
                return
            flush()
            part = FileSlice(os.dup(fd), 0, size)
            if not pipe.put(part):
                part.close()
                raise DeltaError("the engine stopped reading")

        try:
            got = layer_digest(tar_split=tar_split, diff_dir=layer.diff_dir, sink=sink,
                               sink_files=False, on_file=on_file, crc=False)
            if got != diff_id:
                raise DeltaError(f"source layer {diff_id} on disk rebuilds to {got}")
            if buf:
                pipe.put(bytes(buf))
            pipe.put(OK)
        except BaseException as exc:
            pipe.put(exc)

    return Blob(size=size, produce=produce)


def plan_blobs(header: Header, *, root: DataRoot, src_id: str, path: Path, offset: int,
               prefixes: Prefixes, files: OldFiles) -> tuple[bytes, bytes, dict[str, Blob]]:
    """(carrier config, manifest, blobs by digest) for pulling the delta's image."""
    config = carrier_config(header.config)
    layers: list[tuple[str, str, int]] = []

    def give_config(pipe: Pipe) -> None:
        if pipe.put(config):
            pipe.put(OK)

    blobs = {"sha256:" + hashlib.sha256(config).hexdigest(): Blob(size=lambda: len(config),
                                                                  produce=give_config)}
    below_new = False
    for n, plan in enumerate(header.layers):
        if plan.kind != "reuse":
            below_new = True
            layers.append((LAYER_TYPE, plan.diff_id, plan.size))
            blobs[plan.diff_id] = new_layer(n, header, path, offset, prefixes, files)
            offset += plan.length
            continue
        known = None if below_new else known_digest(root, plan.diff_id)
        if known is not None:  # the engine finds it by that digest: never fetched
            layers.append((GZIP_TYPE, known, 0))
        else:
            blob = old_layer(root, src_id, plan.diff_id)
            layers.append((LAYER_TYPE, plan.diff_id, blob.size()))
            blobs[plan.diff_id] = blob
    return config, manifest(config, layers), blobs
