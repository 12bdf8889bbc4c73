"""`preload extract`: copy what images are made of out of an engine's data root (a live one,
or an offline copy) into a bundle directory (seed 003, with chain ids computed, not searched)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgefleet.engine.rootwrite import LAYERDB_FILES
from edgefleet.engine.storage import DataRoot, StorageError
from edgefleet.preload.bundle import (
    FORMAT,
    FORMAT_STREAMS,
    ImageRecord,
    LayerRecord,
    Manifest,
    config_path,
    layer_dir,
    write_manifest,
)
from edgefleet.preload.copytree import tree_usage
from edgefleet.preload.errors import NoProgress, PreloadError, Progress
from edgefleet.preload.layercopy import LayerCopy, copy_layers
from edgefleet.preload.streams import STREAM


@dataclass(frozen=True)
class Selection:
    """The images asked for and the distinct layers they need, read from a data root."""

    root: DataRoot
    images: list[ImageRecord]
    layers: dict[str, LayerRecord]
    configs: dict[str, bytes]
    named_by: dict[str, str]
    """chain id → the first image (as asked) that uses it."""

    def layerdb(self, chain_id: str) -> Path:
        return self.root.image_dir / "layerdb" / "sha256" / chain_id.removeprefix("sha256:")

    def diff_dir(self, chain_id: str) -> Path:
        return self.root.path / "overlay2" / self.layers[chain_id].cache_id / "diff"


def select(*, data_root: Path, refs: Sequence[str]) -> Selection:
    """Resolve images (name, full or short id) and their layers by chain id; nothing written."""
    if not refs:
        raise PreloadError("name at least one image to extract")
    try:
        root = DataRoot(data_root)
        found = [(ref, root.image(ref)) for ref in refs]
    except StorageError as exc:
        raise PreloadError(str(exc)) from None
    repos = root.repositories()
    images: list[ImageRecord] = []
    layers: dict[str, LayerRecord] = {}
    configs: dict[str, bytes] = {}
    named_by: dict[str, str] = {}
    for ref, img in found:
        hexid = img.id.removeprefix("sha256:")
        raw = (root.image_dir / "imagedb" / "content" / "sha256" / hexid).read_bytes()
        if hashlib.sha256(raw).hexdigest() != hexid:
            raise PreloadError(f"image {ref}: its config does not hash to its id {img.id}")
        configs[img.id] = raw
        parent: str | None = None
        for layer in img.layers:
            if layer.chain_id not in layers:
                if not layer.diff_dir.is_dir():
                    raise PreloadError(f"image {ref}: layer {layer.chain_id} has no "
                                       f"{layer.diff_dir}")
                usage = tree_usage(layer.diff_dir)
                layers[layer.chain_id] = LayerRecord(
                    chain_id=layer.chain_id, diff_id=layer.diff_id, parent=parent,
                    cache_id=layer.cache_id, size=layer.size, bytes=usage.bytes,
                    files=usage.entries)
                named_by[layer.chain_id] = ref
            parent = layer.chain_id
        refs_of = {name: repo for repo, entries in repos.items()
                   for name, iid in entries.items() if iid == img.id}
        if img.id not in {i.id for i in images}:
            images.append(ImageRecord(id=img.id, asked_as=ref, refs=refs_of,
                                      layers=[x.chain_id for x in img.layers]))
    return Selection(root=root, images=images, layers=layers, configs=configs,
                     named_by=named_by)


def copies_for(sel: Selection, staging: Path, *, streams: bool = False) -> list[LayerCopy]:
    """Each selected layer's diff dir, copied into the bundle (or, with `streams`, written as
    its tar stream) and verified against the bundle's copy of its tar-split (so the bundle
    holds exactly what was checked)."""
    return [LayerCopy(image=sel.named_by[c], chain_id=c, diff_id=rec.diff_id,
                      src=sel.diff_dir(c), dst=layer_dir(bundle=staging, chain_id=c)
                      / (STREAM if streams else "diff"),
                      tar_split=layer_dir(bundle=staging, chain_id=c) / "layerdb"
                      / "tar-split.json.gz", bytes=rec.bytes,
                      entries=rec.files, how="to-stream" if streams else "tree")
            for c, rec in sel.layers.items()]


def _prepare_out(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PreloadError(f"{out} exists and is not an empty directory: choose a new --out")
    if not out.parent.is_dir():
        raise PreloadError(f"{out.parent} does not exist")
    return out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"


def extract(*, data_root: Path, out: Path, refs: Sequence[str], verify: bool = True,
            progress: Progress | None = None, streams: bool = False) -> Manifest:
    """Copy the images into a new bundle at `out`, verifying every layer as it is read
    (unless told not to); on any failure nothing is kept. With `streams`, each layer is stored
    as its tar stream (bundle format 2: one sequential read and hash per layer)."""
    progress = progress or NoProgress()
    sel = select(data_root=data_root, refs=refs)
    manifest = Manifest(source=str(data_root), verified=verify, images=sel.images,
                        layers=sel.layers, format=FORMAT_STREAMS if streams else FORMAT)
    try:  # ids become file names in the bundle: a damaged source root must not choose them
        manifest.check()
    except ValueError as exc:
        raise PreloadError(f"{data_root} holds an id that is not in its exact form, nothing "
                           f"was written: {exc}") from None
    staging = _prepare_out(out)
    try:
        (staging / "images").mkdir(parents=True)
        for image_id, raw in sel.configs.items():
            config_path(bundle=staging, image_id=image_id).write_bytes(raw)
        for chain_id in sel.layers:
            dest = layer_dir(bundle=staging, chain_id=chain_id)
            (dest / "layerdb").mkdir(parents=True)
            for name in LAYERDB_FILES:
                src = sel.layerdb(chain_id) / name
                if src.exists():
                    shutil.copyfile(src, dest / "layerdb" / name)
        copy_layers(layers=copies_for(sel, staging, streams=streams), verify=verify,
                    progress=progress)
        write_manifest(bundle=staging, manifest=manifest)
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise PreloadError(f"copying into {out} failed, nothing kept: {exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
