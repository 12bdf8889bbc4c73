"""Status of a supervisor from its store and the engine (works while it runs, or not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgefleet.device.runtime import open_store
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.errors import EngineError


async def collect_status(*, data_dir: Path, engine_socket: str, scope: str) -> dict[str, Any]:
    """Apps (release, update status), services (container state) and images (progress)."""
    store = open_store(data_dir=data_dir)
    report: dict[str, Any] = {
        "apps": [a.__dict__ for a in store.apps()],
        "images": [i.__dict__ for i in store.images()],
        "services": [],
        "engine_error": "",
    }
    engine = DockerEngine(socket=engine_socket, scope=scope)
    try:
        observed = await engine.observe()
        for c in observed.containers:
            parts = c.name_parts
            report["services"].append({
                "app_uuid": c.app_uuid, "service": c.service_name, "status": c.status,
                "container_id": c.id, "image": c.image, "name": c.name,
                "release": parts.commit if parts else "", "exit_code": c.exit_code,
                "restart_count": c.restart_count, "health": c.health,
            })
    except EngineError as exc:
        report["engine_error"] = str(exc)
    finally:
        await engine.close()
        store.close()
    return report


async def collect_locks(*, data_dir: Path, engine_socket: str, scope: str) -> list[dict[str, Any]]:
    """Every update lock under the data dir's lock root, with whether its owner runs."""
    from edgefleet.device.locks import find_locks
    from edgefleet.model.engine_state import EngineState

    engine = DockerEngine(socket=engine_socket, scope=scope)
    try:
        observed = await engine.observe()
    except EngineError:
        observed = EngineState()
    finally:
        await engine.close()
    return [{"app_id": lk.app_id, "app_uuid": lk.app_uuid, "service": lk.service,
             "path": str(lk.path), "owner_running": lk.owner_running}
            for lk in find_locks(lock_root=str(data_dir / "services"), observed=observed)]
