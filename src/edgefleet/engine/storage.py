"""Read a Docker/balenaEngine data root (overlay2) directly, without the engine (seed 001).

image/overlay2/imagedb/content/sha256/<imageId>   image config (rootfs.diff_ids)
image/overlay2/layerdb/sha256/<chainId>/          diff, parent, cache-id, size, tar-split.json.gz
image/overlay2/layerdb/mounts/<containerId>/      mount-id, init-id, parent
image/overlay2/repositories.json                  tags and digests → image ids
overlay2/<cacheId>/                               diff/, link, lower
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class StorageError(ValueError):
    """The data root does not hold what was asked for, or is not a data root."""


def chain_ids(diff_ids: list[str]) -> list[str]:
    """chainId(1) = diffId(1); chainId(n) = sha256(chainId(n-1) + " " + diffId(n))."""
    out: list[str] = []
    for diff in diff_ids:
        if not out:
            out.append(diff)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff}".encode()).hexdigest())
    return out


@dataclass(frozen=True)
class Layer:
    """One image layer on disk."""

    diff_id: str
    chain_id: str
    cache_id: str
    size: int
    directory: Path

    @property
    def diff_dir(self) -> Path:
        return self.directory / "diff"


@dataclass(frozen=True)
class ImageOnDisk:
    """An image: its id, the tags naming it, and its layers bottom first."""

    id: str
    tags: tuple[str, ...]
    layers: tuple[Layer, ...]
    config: dict[str, Any]


@dataclass(frozen=True)
class ContainerOnDisk:
    """A container's writable layer."""

    id: str
    name: str
    mount_id: str
    init_id: str
    writable_dir: Path
    labels: dict[str, str]
    volumes: tuple[str, ...]


def dir_size(path: Path) -> int:
    """Bytes of regular files under a directory (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


class DataRoot:
    """A data root such as /var/lib/docker (a live engine's, or an offline copy)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.image_dir = self.path / "image" / "overlay2"
        if not (self.image_dir / "imagedb").is_dir():
            raise StorageError(f"{self.path} is not an overlay2 engine data root (no "
                               "image/overlay2/imagedb): pass the engine's --data-root")

    def repositories(self) -> dict[str, dict[str, str]]:
        path = self.image_dir / "repositories.json"
        if not path.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(path.read_text()).get("Repositories", {})
        return data

    def image_ids(self) -> list[str]:
        content = self.image_dir / "imagedb" / "content" / "sha256"
        return sorted(f"sha256:{p.name}" for p in content.iterdir()) if content.is_dir() else []

    def resolve_image(self, ref: str) -> str:
        """A tag (`repo:tag`, `repo` = `:latest`), a digest ref, a full or short id → image id."""
        want = ref if ":" in ref.rsplit("/", 1)[-1] or "@" in ref else f"{ref}:latest"
        for repo in self.repositories().values():
            if want in repo:
                return repo[want]
        bare = ref.removeprefix("sha256:")
        matches = [i for i in self.image_ids() if i.removeprefix("sha256:").startswith(bare)]
        if len(bare) >= 4 and len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise StorageError(f"image id prefix {ref!r} is ambiguous: use more characters")
        raise StorageError(f"no image {ref!r} in {self.path}")

    def image(self, ref: str) -> ImageOnDisk:
        image_id = self.resolve_image(ref)
        hexid = image_id.removeprefix("sha256:")
        config = json.loads((self.image_dir / "imagedb" / "content" / "sha256" / hexid)
                            .read_text())
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
        layers = []
        for diff_id, chain in zip(diff_ids, chain_ids(diff_ids), strict=True):
            layer_dir = self.image_dir / "layerdb" / "sha256" / chain.removeprefix("sha256:")
            try:
                cache_id = (layer_dir / "cache-id").read_text().strip()
                size = int((layer_dir / "size").read_text().strip() or 0)
            except OSError as exc:
                raise StorageError(f"image {ref}: layer {chain} is missing from layerdb "
                                   f"({exc.strerror})") from None
            layers.append(Layer(diff_id=diff_id, chain_id=chain, cache_id=cache_id, size=size,
                                directory=self.path / "overlay2" / cache_id))
        tags = tuple(sorted(name for repo in self.repositories().values()
                            for name, iid in repo.items() if iid == image_id))
        return ImageOnDisk(id=image_id, tags=tags, layers=tuple(layers), config=config)

    def containers(self) -> list[ContainerOnDisk]:
        return [self.container(p.name) for p in sorted((self.path / "containers").glob("*"))
                if (p / "config.v2.json").exists()]

    def container(self, ref: str) -> ContainerOnDisk:
        base = self.path / "containers"
        candidates = [p for p in base.glob("*") if p.name.startswith(ref)] if base.is_dir() else []
        if not candidates and base.is_dir():
            for p in base.glob("*"):
                cfg = p / "config.v2.json"
                if cfg.exists() and json.loads(cfg.read_text()).get("Name", "").lstrip("/") == ref:
                    candidates = [p]
                    break
        if len(candidates) != 1:
            raise StorageError(f"no single container {ref!r} in {self.path}")
        cid = candidates[0].name
        cfg = json.loads((candidates[0] / "config.v2.json").read_text())
        mounts = self.image_dir / "layerdb" / "mounts" / cid
        mount_id = (mounts / "mount-id").read_text().strip()
        init_id = (mounts / "init-id").read_text().strip() if (mounts / "init-id").exists() \
            else ""
        volumes = tuple(sorted(m.get("Name", "") for m in (cfg.get("MountPoints") or {}).values()
                               if m.get("Type") == "volume"))
        return ContainerOnDisk(id=cid, name=cfg.get("Name", "").lstrip("/"), mount_id=mount_id,
                               init_id=init_id,
                               writable_dir=self.path / "overlay2" / mount_id / "diff",
                               labels=(cfg.get("Config") or {}).get("Labels") or {},
                               volumes=volumes)

    def volume_dirs(self) -> dict[str, Path]:
        root = self.path / "volumes"
        return {p.name: p / "_data" for p in sorted(root.iterdir())
                if (p / "_data").is_dir()} if root.is_dir() else {}


def volume_usage(root: DataRoot) -> dict[str, Any]:
    """Each volume's size and the (app, service) containers using it; totals per app (the
    `<appId>_` prefix of supervised volume names) and per service."""
    users: dict[str, list[dict[str, str]]] = {}
    for ctr in root.containers():
        for vol in ctr.volumes:
            users.setdefault(vol, []).append({
                "app": ctr.labels.get("io.balena.app-id", ""),
                "service": ctr.labels.get("io.balena.service-name", ctr.name)})
    rows: list[dict[str, Any]] = []
    per_app: dict[str, int] = {}
    per_service: dict[str, int] = {}
    for name, path in root.volume_dirs().items():
        size = dir_size(path)
        rows.append({"volume": name, "size": size, "used_by": users.get(name, [])})
        app = name.split("_", 1)[0] if "_" in name else ""
        per_app[app] = per_app.get(app, 0) + size
        for user in users.get(name, []):
            key = f"{user['app']}/{user['service']}"
            per_service[key] = per_service.get(key, 0) + size
    return {"volumes": rows, "per_app": per_app, "per_service": per_service}
