"""How much disk a set of pulls needs (from registry manifests) and how much the engine's data
root has free (its `DockerRootDir`, statvfs).

The estimate. A manifest gives each layer's *compressed* size; the uncompressed size is in
neither the manifest nor the image config (the config only has the uncompressed digests, the
diff ids). So: need = EXPANSION x (compressed bytes of the layers the engine does not have yet)
+ the IN_FLIGHT largest of those layers again (the engine keeps a downloaded blob in
`<data-root>/tmp` until it is extracted, up to 3 at a time) + the configs. EXPANSION is 3:
gzip shrinks typical root filesystems (binaries, libraries, text) 2.5-3.5x. A layer counts as
present when its diff id (the config's `rootfs.diff_ids`, in the manifest's layer order) is in
some image on the engine, exactly the test the engine makes before downloading it; layers
shared between the new images count once.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.errors import NotFound
from edgefleet.engine.registry import ImageManifest, Platform, RegistryClient

EXPANSION = 3.0
IN_FLIGHT = 3
MB = 2**20


@dataclass(frozen=True)
class SpaceNeed:
    """Bytes a set of pulls will take, and what they would download."""

    need_bytes: int
    download_bytes: int
    missing_layers: int
    per_image: dict[str, int] = field(default_factory=dict)
    """Image ref → compressed bytes it alone still has to download."""


def estimate(*, manifests: Iterable[ImageManifest], present: set[str]) -> SpaceNeed:
    """The space pulling these images needs, given the diff ids the engine already has."""
    seen: set[str] = set(present)
    sizes: list[int] = []
    per_image: dict[str, int] = {}
    configs = 0
    for m in manifests:
        configs += m.config_size
        own = 0
        for layer in m.layers:
            if layer.diff_id in seen:
                continue
            seen.add(layer.diff_id)
            sizes.append(layer.size)
            own += layer.size
        per_image[m.ref] = own
    download = sum(sizes)
    in_flight = sum(sorted(sizes, reverse=True)[:IN_FLIGHT])
    need = math.ceil(EXPANSION * download) + in_flight + configs if sizes else configs
    return SpaceNeed(need_bytes=need, download_bytes=download, missing_layers=len(sizes),
                     per_image=per_image)


def free_bytes(*, path: str) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem of `path` (None when this
    process cannot see that path, e.g. a containerised supervisor without the data root)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


async def present_diff_ids(engine: DockerEngine) -> set[str]:
    """Every layer (diff id) of every image on the engine."""
    images = await engine.raw_list("images")

    async def layers(image_id: str) -> list[str]:
        try:
            info = await engine.image_inspect(image_id)
        except NotFound:
            return []
        return list((info.get("RootFS") or {}).get("Layers") or [])

    found = await asyncio.gather(*(layers(str(i["Id"])) for i in images))
    return {d for ids in found for d in ids}


@dataclass(frozen=True)
class EngineFacts:
    """What the estimator needs from the engine's /info."""

    data_root: str
    platform: Platform
    insecure: tuple[str, ...]


async def engine_facts(engine: DockerEngine) -> EngineFacts:
    """Data root, platform and insecure registries of the engine."""
    info = await engine.info()
    reg = info.get("RegistryConfig") or {}
    insecure = [str(c) for c in reg.get("InsecureRegistryCIDRs") or []]
    insecure += [str(name) for name, cfg in (reg.get("IndexConfigs") or {}).items()
                 if not (cfg or {}).get("Secure", True)]
    return EngineFacts(data_root=str(info.get("DockerRootDir") or "/var/lib/docker"),
                       platform=Platform.from_engine(os_type=str(info.get("OSType") or ""),
                                                     machine=str(info.get("Architecture")
                                                                 or "")),
                       insecure=tuple(insecure))


async def manifests_for(*, client: RegistryClient, refs: Iterable[str]) -> list[ImageManifest]:
    """Manifests of several images, fetched concurrently (the first error is raised)."""
    return list(await asyncio.gather(*(client.manifest(ref=r) for r in sorted(set(refs)))))
