"""A preload bundle (the OUT directory of `preload extract`):

    manifest.json                         what is inside (written last: no manifest, no bundle)
    images/<imageId hex>                  each image's config, byte for byte (its id is its sha256)
    layers/<chainId hex>/layerdb/         diff, parent, cache-id, size, tar-split.json.gz
    layers/<chainId hex>/diff/            format 1: the layer's overlay2 diff directory
                                          (whiteouts as 0:0 char devices, opaque dirs as
                                          xattrs, hard links)
    layers/<chainId hex>/layer.tar        format 2: the layer's tar stream instead (what its
                                          diffId hashes; preload/streams.py)

Each layer is stored once, however many images share it. Both formats are read."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.preload.errors import PreloadError

FORMAT = "edgefleet-preload/1"
FORMAT_STREAMS = "edgefleet-preload/2"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
"""The only form of an image id, diff id or chain id (they become file names in the target)."""
CACHE_ID = re.compile(r"[0-9a-f]{64}")
"""The only form of an overlay2 cache id (a directory name under the target's overlay2/)."""


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

    @property
    def streams(self) -> bool:
        """Layers stored as tar streams (format 2) rather than trees (format 1)."""
        return self.format == FORMAT_STREAMS

    def tags(self) -> dict[str, str]:
        """Every ref in the bundle → its image id."""
        return {ref: img.id for img in self.images for ref in img.refs}

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Parse manifest.json; KeyError/TypeError/ValueError when it is not one. Every id must
        be in its exact form, since inject turns ids into file names under the target root."""
        if data.get("format") not in (FORMAT, FORMAT_STREAMS):
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r} or "
                             f"{FORMAT_STREAMS!r}")
        layers = {k: LayerRecord(**v) for k, v in _mapping(data["layers"], "layers").items()}
        images = [ImageRecord(**v) for v in _list(data["images"], "images")]
        manifest = cls(source=str(data["source"]), verified=bool(data["verified"]),
                       images=images, layers=layers, format=str(data["format"]))
        manifest.check()
        return manifest

    def check(self) -> None:
        """ValueError naming the first id not in its exact form, or a dangling reference."""
        layers, images = self.layers, self.images
        for key, rec in layers.items():
            where = f"layers[{key!r}]"
            _exact(rec.chain_id, DIGEST, f"{where}.chain_id")
            if rec.chain_id != key:
                raise ValueError(f"{where}.chain_id {rec.chain_id!r} differs from its key")
            _exact(rec.diff_id, DIGEST, f"{where}.diff_id")
            _exact(rec.cache_id, CACHE_ID, f"{where}.cache_id", "64 lowercase hex digits")
            if rec.parent is not None:
                _exact(rec.parent, DIGEST, f"{where}.parent")
                if rec.parent not in layers:
                    raise ValueError(f"{where}.parent {rec.parent} is not a layer of the bundle")
            for name in ("size", "bytes", "files"):
                if type(getattr(rec, name)) is not int or getattr(rec, name) < 0:
                    raise ValueError(f"{where}.{name} is not a whole number")
        for i, img in enumerate(images):
            _exact(img.id, DIGEST, f"images[{i}].id")
            if not isinstance(img.asked_as, str) or not all(
                    isinstance(k, str) and isinstance(v, str)
                    for k, v in _mapping(img.refs, f"images[{i}].refs").items()):
                raise ValueError(f"images[{i}]: asked_as and refs must be strings")
            for n, chain in enumerate(_list(img.layers, f"images[{i}].layers")):
                _exact(chain, DIGEST, f"images[{i}].layers[{n}]")
            missing = [c for c in img.layers if c not in layers]
            if missing:
                raise ValueError(f"image {img.id} names layers not in the bundle: {missing}")


def _exact(value: object, form: re.Pattern[str], where: str,
           what: str = "'sha256:' and 64 lowercase hex digits") -> None:
    if not isinstance(value, str) or form.fullmatch(value) is None:
        raise ValueError(f"{where} is {value!r}, not {what}")


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} is not an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where} is not a list")
    return value


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
        what = str(exc) if isinstance(exc, ValueError) else repr(exc)
        raise PreloadError(f"{path} is not a valid preload manifest: {what}; nothing was "
                           "written (extract the bundle again)") from None


def write_manifest(*, bundle: Path, manifest: Manifest) -> None:
    """Write manifest.json (temporary name, then rename)."""
    tmp = bundle / ".manifest.json.tmp"
    tmp.write_text(json.dumps(asdict(manifest), indent=2))
    tmp.rename(bundle / "manifest.json")
