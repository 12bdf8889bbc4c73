"""Target and current state side by side (seed 000 §2.3), with differences marked.

Reads the supervisor's store read-only (it may be running) and the engine; never changes either.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edgefleet.engine.docker import DockerEngine
from edgefleet.model.engine_state import EngineState


@dataclass(frozen=True)
class ServiceRow:
    """One service: what the target says and what the engine runs."""

    app: str
    service: str
    target_image: str
    target_release: str
    target_running: bool | None
    current_image: str
    current_release: str
    current_status: str

    @property
    def differences(self) -> list[str]:
        out = []
        if not self.target_image:
            out.append("not in the target")
        elif not self.current_status:
            out.append("no container")
        else:
            if self.target_image != self.current_image:
                out.append("image")
            if self.target_release != self.current_release:
                out.append("release")
            if self.target_running and self.current_status != "running":
                out.append(f"should run, is {self.current_status}")
            if self.target_running is False and self.current_status == "running":
                out.append("should be stopped")
        return out


def read_target(*, db: Path) -> dict[str, object]:
    """The last good target document of a supervisor store ({} when there is none)."""
    if not db.exists():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT document FROM target").fetchone()
    doc = json.loads(row[0]) if row else {}
    return doc if isinstance(doc, dict) else {}


def compare(*, target: dict[str, object], observed: EngineState) -> list[ServiceRow]:
    """Rows for every service in the target or on the engine."""
    wanted: dict[tuple[str, str], tuple[str, str, bool]] = {}
    for device in target.values():
        apps = device.get("apps", {}) if isinstance(device, dict) else {}
        for app_uuid, app in apps.items():
            for commit, release in (app.get("releases") or {}).items():
                for name, svc in (release.get("services") or {}).items():
                    wanted[(app_uuid, name)] = (svc.get("image", ""), commit,
                                                bool(svc.get("running", True)))
                break  # only the first release counts
    running = {(c.app_uuid, c.service_name): c for c in observed.containers}
    rows = []
    for key in sorted(set(wanted) | set(running)):
        image, commit, run = wanted.get(key, ("", "", None))
        c = running.get(key)
        parts = c.name_parts if c else None
        rows.append(ServiceRow(app=key[0], service=key[1], target_image=image,
                               target_release=commit, target_running=run,
                               current_image=c.image if c else "",
                               current_release=parts.commit if parts else "",
                               current_status=c.status if c else ""))
    return rows


async def collect_state(*, data_dir: Path, engine_socket: str, scope: str) -> list[ServiceRow]:
    """Compare the store's target with what the engine runs for that scope."""
    engine = DockerEngine(socket=engine_socket, scope=scope)
    try:
        observed = await engine.observe()
    finally:
        await engine.close()
    return compare(target=read_target(db=data_dir / "edgefleet.sqlite"), observed=observed)
