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
        "images": [{**i.__dict__, "progress": progress_text(downloaded=i.downloaded,
                                                           total=i.total)}
                   for i in store.images()],
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
    _service_updates(report)
    return report


def progress_text(*, downloaded: int, total: int) -> str:
    """`1.2 MB / 2.6 MB (45%)`, or "" before the engine knows the size."""
    if not total:
        return ""
    return (f"{downloaded / 2**20:.1f} MB / {total / 2**20:.1f} MB"
            f" ({100 * downloaded // total}%)")


def _service_updates(report: dict[str, Any]) -> None:
    """Give each service the state of the image it is being updated to (downloading with
    progress, downloaded, failed with the cause), and list services with no container yet."""
    services = report["services"]
    by_key = {(s["app_uuid"], s["service"]): s for s in services}
    for s in services:
        s.setdefault("update", "")
    for img in report["images"]:
        key = (img["app_uuid"], img["service_name"])
        svc = by_key.get(key)
        if (svc is not None and svc["image"] == img["ref"]) or img["status"] not in (
            "Downloading", "Failed"
        ):
            continue
        if img["status"] == "Downloading":
            text = f"downloading {img['ref']} {img['progress']}".rstrip()
        else:
            text = f"download of {img['ref']} failed: {img['error']}"
        if img["error"] and img["status"] == "Downloading":
            text += f" ({img['error']})"
        if svc is None:
            svc = {"app_uuid": key[0], "service": key[1], "status": "no container",
                   "container_id": "", "image": "", "name": "", "release": "",
                   "exit_code": None, "restart_count": 0, "health": None, "update": ""}
            services.append(svc)
            by_key[key] = svc
        svc["update"] = text


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
