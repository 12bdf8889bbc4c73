"""Reclaim engine disk space safely (seed 000 §11.1): delete the images `model.prune` selects,
and optionally the build cache. Containers, volumes and networks are never touched."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.errors import EngineError, NotFound
from edgefleet.model.prune import PruneCandidate, prunable_images


@dataclass
class PruneResult:
    """What a prune found, deleted and kept (and why)."""

    dry_run: bool
    candidates: list[PruneCandidate] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    """Image id → why the engine refused to delete it (e.g. a container appeared meanwhile)."""
    build_cache_bytes: int = 0

    @property
    def reclaimable_bytes(self) -> int:
        return sum(c.size for c in self.candidates) + self.build_cache_bytes

    @property
    def reclaimed_bytes(self) -> int:
        sizes = {c.image_id: c.size for c in self.candidates}
        return sum(sizes.get(i, 0) for i in self.removed) + (
            0 if self.dry_run else self.build_cache_bytes)


async def prune_images(engine: DockerEngine, *, desired_refs: Iterable[str],
                       managed_refs: Iterable[str] = (), dangling: bool = False,
                       build_cache: bool = False, dry_run: bool = False) -> PruneResult:
    """Delete (or with dry_run only list) unused managed images and, when asked, dangling
    images and the unused build cache. Images are deleted without force, so the engine still
    refuses any image a container started using since the listing."""
    observed = await engine.observe()
    containers = await engine.raw_list("containers")
    result = PruneResult(dry_run=dry_run, candidates=prunable_images(
        observed=observed, used_ids={str(c.get("ImageID", "")) for c in containers},
        desired_refs=desired_refs, managed_refs=managed_refs, dangling=dangling))
    if build_cache:
        result.build_cache_bytes = await _build_cache(engine, dry_run=dry_run)
    if dry_run:
        return result
    for cand in result.candidates:
        try:
            await engine.remove_image(cand.image_id)
        except NotFound:
            result.removed.append(cand.image_id)  # gone already
        except EngineError as exc:
            result.kept[cand.image_id] = str(exc)
        else:
            result.removed.append(cand.image_id)
    return result


async def _build_cache(engine: DockerEngine, *, dry_run: bool) -> int:
    """Bytes of build cache no build uses (deleted unless dry_run)."""
    if dry_run:
        df = await engine.api("system", "system/df")
        return sum(int(b.get("Size") or 0) for b in df.get("BuildCache") or []
                   if not b.get("InUse") and not b.get("Shared"))
    done = await engine.api("build cache", "build/prune", "POST")
    return int(done.get("SpaceReclaimed") or 0)
