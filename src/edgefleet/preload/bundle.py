"""A preload bundle (the OUT directory of `preload extract`):

    manifest.json                         what is inside (written last: no manifest, no bundle)
    images/<imageId hex>                  each image's config, byte for byte (its id is its sha256)
    layers/<chainId hex>/layerdb/         diff, parent, cache-id, size, tar-split.json.gz
    layers/<chainId hex>/diff/            the layer's overlay2 diff directory (whiteouts as
                                          0:0 char devices, opaque dirs as xattrs, hard links)

Each layer is stored once, however many images share it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.preload.errors import PreloadError

FORMAT = "edgefleet-preload/1"


@dataclass(frozen=True)
class LayerRecord:
    """One layer of the bundle."""

    chain_id: str
    diff_id: str
    parent: str | None
    cache_id: str
    size: int
    bytes: int
    """Bytes of regular files in its diff dir (what a copy writes)."""
    files: int
    """Entries (files, dirs, links, whiteouts) in its diff dir."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of the bundle: id, the repositories.json entries naming it, layers bottom
    first (chain ids)."""

    id: str
    asked_as: str
    refs: dict[str, str]
    """`ref → repository` as in repositories.json (`repo:tag` and `repo@sha256:...`)."""
    layers: list[str]


@dataclass(frozen=True)
class Manifest:
    """manifest.json of a bundle (plain dataclasses: the CLI starts without pydantic)."""

    source: str
    verified: bool
    images: list[ImageRecord]
    layers: dict[str, LayerRecord]
    format: str = field(default=FORMAT)

    def tags(self) -> dict[str, str]:
        """Every ref in the bundle → its image id."""
        return {ref: img.id for img in self.images for ref in img.refs}

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Parse manifest.json; KeyError/TypeError/ValueError when it is not one."""
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        layers = {k: LayerRecord(**v) for k, v in data["layers"].items()}
        images = [ImageRecord(**v) for v in data["images"]]
        for img in images:
            missing = [c for c in img.layers if c not in layers]
            if missing:
                raise ValueError(f"image {img.id} names layers not in the bundle: {missing}")
        return cls(source=str(data["source"]), verified=bool(data["verified"]), images=images,
                   layers=layers)


def layer_dir(*, bundle: Path, chain_id: str) -> Path:
    """`layers/<chainId hex>` of a bundle."""
    return bundle / "layers" / chain_id.removeprefix("sha256:")


def config_path(*, bundle: Path, image_id: str) -> Path:
    """`images/<imageId hex>` of a bundle."""
    return bundle / "images" / image_id.removeprefix("sha256:")


def read_manifest(bundle: Path) -> Manifest:
    """The bundle's manifest; a clear error when `bundle` is not one."""
    path = bundle / "manifest.json"
    if not path.is_file():
        raise PreloadError(f"{bundle} is not a preload bundle (no manifest.json): pass the "
                           "--out directory of `edgefleet preload extract`")
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PreloadError(f"{path} is not a valid preload manifest: {exc!r}") from None


def write_manifest(*, bundle: Path, manifest: Manifest) -> None:
    """Write manifest.json (temporary name, then rename)."""
    tmp = bundle / ".manifest.json.tmp"
    tmp.write_text(json.dumps(asdict(manifest), indent=2))
    tmp.rename(bundle / "manifest.json")
