"""Integrity: each layer's diff directory, reassembled with its tar-split, must hash to the
diffId the image records. Runs before anything is written."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edgefleet.engine.tarsplit import LayerMismatch, layer_digest
from edgefleet.preload.errors import PreloadError, Progress


@dataclass(frozen=True)
class LayerToCheck:
    """A layer to verify, and the image that named it (for the error message)."""

    image: str
    chain_id: str
    diff_id: str
    tar_split: Path
    diff_dir: Path
    bytes: int


def verify_layers(*, layers: Sequence[LayerToCheck], progress: Progress,
                  workers: int = 2) -> None:
    """Recompute every layer's diffId (two at a time); raise PreloadError naming the image,
    the layer and the file on the first mismatch."""
    progress.phase("verify", sum(x.bytes for x in layers))
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            progress.advance(n)

    def check(layer: LayerToCheck) -> str | None:
        where = f"image {layer.image}: layer {layer.chain_id} (diffId {layer.diff_id})"
        try:
            got = layer_digest(tar_split=layer.tar_split, diff_dir=layer.diff_dir,
                               progress=advance)
        except LayerMismatch as exc:
            place = f" file {exc.file}:" if exc.file else ""
            return f"{where},{place} {exc.reason}"
        if got != layer.diff_id:
            return f"{where}: its content hashes to {got}"
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = [p for p in pool.map(check, layers) if p]
    if problems:
        raise PreloadError("integrity check failed, nothing was written: " + problems[0]
                           + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                           + "; pass --no-verify only if you know the layer is good")
