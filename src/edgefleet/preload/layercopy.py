"""Copy layers' diff directories, verifying each layer's diffId in the same read: the bytes
hashed are the bytes written. Layers go two at a time on threads (hashlib, the reads and the
writes release the GIL), the costliest first, counting inodes too. Callers copy into a place
nothing reads until they commit (extract: a staging directory; inject: overlay2 dirs without
a layerdb entry), and remove what was copied when this raises."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from edgefleet.engine.tarsplit import LayerMismatch, layer_digest
from edgefleet.preload.copytree import copy_tree
from edgefleet.preload.errors import PreloadError, Progress
from edgefleet.preload.streams import unpack_stream, write_stream


@dataclass(frozen=True)
class LayerCopy:
    """A layer to copy (and verify), and the image that named it (for the error message)."""

    image: str
    chain_id: str
    diff_id: str
    src: Path
    dst: Path
    tar_split: Path
    bytes: int
    entries: int
    how: str = "tree"
    """"tree" (copy a diff dir), "to-stream" (write the layer's tar stream to `dst`) or
    "from-stream" (build the diff dir `dst` from the tar stream `src`)."""

    @property
    def cost(self) -> int:
        """Rough work, in bytes: creating an inode costs about as much as hashing and copying
        256 KiB (busybox's few MB with hundreds of links take longer than a 48 MB file)."""
        return self.bytes + self.entries * 256 * 1024


def copy_layers(*, layers: Sequence[LayerCopy], verify: bool, progress: Progress,
                workers: int = 2) -> None:
    """Copy every layer's diff dir; with `verify`, recompute each diffId from the data as it
    is copied and raise PreloadError naming the image, the layer and the file on a mismatch
    (after every copy in flight has stopped). Write errors raise OSError."""
    progress.phase("verify+copy" if verify else "copy", sum(x.bytes for x in layers))
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            progress.advance(n)

    def run(layer: LayerCopy) -> str | None:
        where = f"image {layer.image}: layer {layer.chain_id} (diffId {layer.diff_id})"
        try:
            if layer.how == "to-stream":
                got: str | None = write_stream(tar_split=layer.tar_split, diff_dir=layer.src,
                                               dst=layer.dst, advance=advance, crc=False)
            elif layer.how == "from-stream":
                got = unpack_stream(src=layer.src, dst=layer.dst, advance=advance,
                                    expect=layer.diff_id if verify else None)
            else:
                got = copy_tree(src=layer.src, dst=layer.dst, advance=advance,
                                tar_split=layer.tar_split if verify else None, crc=False)
            if verify and got != layer.diff_id and layer.how != "from-stream":
                # the sha256 alone is the check (CRC-64s skipped: 0.07 of 0.49 CPU s for 210 MB);
                # a wrong one is rare, so only then read the layer again to name the file
                layer_digest(tar_split=layer.tar_split, diff_dir=layer.src)
        except LayerMismatch as exc:
            place = f" file {exc.file}:" if exc.file else ""
            return f"{where},{place} {exc.reason}"
        if verify and got != layer.diff_id:
            return f"{where}: its content hashes to {got}"
        return None

    problems: list[str] = []
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures: list[Future[str | None]] = [
            pool.submit(run, x) for x in sorted(layers, key=lambda x: -x.cost)]
        for fut in as_completed(futures):
            if fut.cancelled():
                continue
            try:
                problem = fut.result()
            except BaseException as exc:  # re-raised once the pool is idle
                error = error or exc
                problem = None
            if problem:
                problems.append(problem)
            if problems or error is not None:
                for other in futures:
                    other.cancel()
    if problems:
        raise PreloadError("integrity check failed, nothing was written: " + problems[0]
                           + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                           + "; pass --no-verify only if you know the layer is good")
    if error is not None:
        raise error
