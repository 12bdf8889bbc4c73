"""`supervisor prune` and `engine prune`: the same selection as the cleanup after an update,
on demand, with the supervisor's store saying which images it pulled and which it needs."""

from __future__ import annotations

from pathlib import Path

from edgefleet.device.store import Store
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.prune import PruneResult, prune_images
from edgefleet.model import formats
from edgefleet.model.errors import InvalidInput


def target_image_refs(*, store: Store) -> list[str]:
    """Every image the stored target references (all apps, all releases)."""
    stored = store.load_target()
    if stored is None:
        return []
    refs: list[str] = []
    for uuid in stored.document:
        try:
            target = formats.parse_v3(data=stored.document, device_uuid=uuid)
        except InvalidInput:
            continue
        for app in target.device.apps.values():
            for release in app.releases.values():
                refs += [s.image for s in release.services.values()]
    return refs


async def prune(*, engine_socket: str, scope: str, data_dir: Path | None, dry_run: bool,
                engine_wide: bool) -> PruneResult:
    """Delete images this supervisor pulled that no release uses (and, `engine_wide`, also
    dangling images and unused build cache). Store records of deleted images are dropped."""
    store_path = data_dir / "edgefleet.sqlite" if data_dir is not None else None
    store = Store(path=store_path) if store_path is not None and store_path.exists() else None
    engine = DockerEngine(socket=engine_socket, scope=scope)
    try:
        records = store.images() if store is not None else []
        result = await prune_images(
            engine, desired_refs=target_image_refs(store=store) if store else [],
            managed_refs=[r.ref for r in records], dangling=engine_wide,
            build_cache=engine_wide, dry_run=dry_run)
        if store is not None:
            for cand in result.candidates:
                if cand.image_id in result.removed:
                    for ref in cand.managed_refs:
                        store.delete_image(ref=ref)
        return result
    finally:
        await engine.close()
        if store is not None:
            store.close()
