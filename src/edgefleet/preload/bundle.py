"""A preload bundle (the OUT directory of `preload extract`):

    manifest.json                         what is inside (written last: no manifest, no bundle)
    images/<imageId hex>                  each image's config, byte for byte (its id is its sha256)
    layers/<chainId hex>/layerdb/         diff, parent, cache-id, size, tar-split.json.gz
    layers/<chainId hex>/diff/            the layer's overlay2 diff directory (whiteouts as
                                          0:0 char devices, opaque dirs as xattrs, hard links)

Each layer is stored once, however many images share it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edgefleet.preload.errors import PreloadError

FORMAT: Literal["edgefleet-preload/1"] = "edgefleet-preload/1"


class LayerRecord(BaseModel):
    """One layer of the bundle."""

    model_config = ConfigDict(frozen=True)

    chain_id: str
    diff_id: str
    parent: str | None
    cache_id: str
    size: int
    bytes: int
    """Bytes of regular files in its diff dir (what a copy writes)."""
    files: int
    """Entries (files, dirs, links, whiteouts) in its diff dir."""


class ImageRecord(BaseModel):
    """One image of the bundle: id, the repositories.json entries naming it, layers bottom
    first (chain ids)."""

    model_config = ConfigDict(frozen=True)

    id: str
    asked_as: str
    refs: dict[str, str]
    """`ref → repository` as in repositories.json (`repo:tag` and `repo@sha256:...`)."""
    layers: list[str]


class Manifest(BaseModel):
    """manifest.json of a bundle."""

    model_config = ConfigDict(frozen=True)

    format: Literal["edgefleet-preload/1"] = FORMAT
    source: str
    verified: bool
    images: list[ImageRecord]
    layers: dict[str, LayerRecord]

    def tags(self) -> dict[str, str]:
        """Every ref in the bundle → its image id."""
        return {ref: img.id for img in self.images for ref in img.refs}


def layer_dir(bundle: Path, chain_id: str) -> Path:
    return bundle / "layers" / chain_id.removeprefix("sha256:")


def config_path(bundle: Path, image_id: str) -> Path:
    return bundle / "images" / image_id.removeprefix("sha256:")


def read_manifest(bundle: Path) -> Manifest:
    """The bundle's manifest; a clear error when `bundle` is not one."""
    path = bundle / "manifest.json"
    if not path.is_file():
        raise PreloadError(f"{bundle} is not a preload bundle (no manifest.json): pass the "
                           "--out directory of `edgefleet preload extract`")
    try:
        return Manifest.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise PreloadError(f"{path} is not a valid preload manifest: {exc}") from None


def write_manifest(bundle: Path, manifest: Manifest) -> None:
    tmp = bundle / ".manifest.json.tmp"
    tmp.write_text(manifest.model_dump_json(indent=2))
    tmp.rename(bundle / "manifest.json")
