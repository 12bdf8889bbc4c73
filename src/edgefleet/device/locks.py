"""Update locks and hand-over markers in the per-service lock dirs (bound at /tmp/balena)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgefleet.model.engine_state import EngineState

LOCK_FILE = "updates.lock"
HANDOVER_FILE = "handover-complete"


@dataclass(frozen=True)
class UpdateLock:
    """A held (or stale) lock: which service's dir holds it, and whether its owner runs."""

    app_id: int
    app_uuid: str
    service: str
    path: Path
    owner_running: bool


def find_locks(*, lock_root: str, observed: EngineState) -> list[UpdateLock]:
    """Every `updates.lock` under the lock root, matched to the containers that own it."""
    root = Path(lock_root)
    running: dict[tuple[int, str], bool] = {}
    uuids: dict[int, str] = {}
    for c in observed.containers:
        key = (c.app_id, c.service_name)
        running[key] = running.get(key, False) or c.is_running
        uuids[c.app_id] = c.app_uuid
    out: list[UpdateLock] = []
    if not root.is_dir():
        return out
    for path in sorted(root.glob(f"*/*/{LOCK_FILE}")):
        service = path.parent.name
        app_dir = path.parent.parent.name
        if not app_dir.isdigit():
            continue
        app_id = int(app_dir)
        out.append(UpdateLock(app_id=app_id, app_uuid=uuids.get(app_id, ""), service=service,
                              path=path, owner_running=running.get((app_id, service), False)))
    return out


def handover_done(*, lock_root: str, app_id: int, service: str) -> bool:
    """True when the service's new container wrote /tmp/balena/handover-complete."""
    return (Path(lock_root) / str(app_id) / service / HANDOVER_FILE).exists()


def clear_handover(*, lock_root: str, app_id: int, service: str) -> None:
    (Path(lock_root) / str(app_id) / service / HANDOVER_FILE).unlink(missing_ok=True)
