"""Where `preload inject` reads what it writes: a bundle directory (`preload extract`'s --out),
or, for the one-step `preload copy`, an engine's data root itself (no bundle in between).

Both answer the same questions by chain id or image id, from paths built out of ids that the
manifest (bundle.Manifest.check) accepted in their exact forms only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgefleet.preload.bundle import Manifest, config_path, layer_dir
from edgefleet.preload.copytree import TreeUsage, tree_usage
from edgefleet.preload.streams import STREAM


@dataclass(frozen=True)
class Source:
    """A bundle: `layers/<chainId hex>/{layerdb,diff|layer.tar}`, `images/<imageId hex>`."""

    path: Path
    manifest: Manifest

    @property
    def streams(self) -> bool:
        """Layers stored as tar streams (bundle format 2) rather than diff trees."""
        return self.manifest.streams

    def layerdb(self, chain_id: str) -> Path:
        """The layer's layerdb files (tar-split.json.gz, size, ...)."""
        return layer_dir(bundle=self.path, chain_id=chain_id) / "layerdb"

    def stored(self, chain_id: str) -> Path:
        """The layer itself: its tar stream (format 2) or its diff dir (format 1)."""
        return layer_dir(bundle=self.path, chain_id=chain_id) / (
            STREAM if self.streams else "diff")

    def config(self, image_id: str) -> Path:
        """The image's config (its id is its sha256)."""
        return config_path(bundle=self.path, image_id=image_id)

    def usage(self, chain_id: str) -> TreeUsage:
        """What writing the layer's tree needs (for a stream: its size bounds the file
        bytes)."""
        path = self.stored(chain_id)
        if not self.streams:
            return tree_usage(path)
        size, files = path.stat().st_size, self.manifest.layers[chain_id].files
        return TreeUsage(bytes=size, entries=files, disk=size + 4096 * (files + 1))


@dataclass(frozen=True)
class RootSource(Source):
    """An engine's data root (`path`, live or an offline copy): `overlay2/<cache-id>/diff`,
    `image/overlay2/layerdb/sha256/<chainId hex>`, `image/overlay2/imagedb/content/...`."""

    image_dir: Path = Path()

    @property
    def streams(self) -> bool:
        return False

    def layerdb(self, chain_id: str) -> Path:
        return self.image_dir / "layerdb" / "sha256" / chain_id.removeprefix("sha256:")

    def stored(self, chain_id: str) -> Path:
        return self.path / "overlay2" / self.manifest.layers[chain_id].cache_id / "diff"

    def config(self, image_id: str) -> Path:
        return (self.image_dir / "imagedb" / "content" / "sha256"
                / image_id.removeprefix("sha256:"))
