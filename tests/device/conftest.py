"""A supervisor on the real dockerd, in this process, with its own scope; cleaned up after."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.device.supervisor import Supervisor
from edgefleet.device.update_gate import UpdateGate
from edgefleet.engine.docker import DockerEngine
from edgefleet.model import formats, naming
from edgefleet.model.context import DeviceContext
from edgefleet.model.engine_state import ContainerState
from edgefleet.model.target import AppTarget, DeviceTarget, ReleaseTarget, TargetState
from tests.support import images


@dataclass
class Device:
    """A test device: a supervisor plus helpers to build targets and wait for convergence."""

    supervisor: Supervisor
    engine: DockerEngine
    store: Store
    logs: LogSink
    app_uuid: str
    data_dir: Path

    def target(self, release: ReleaseTarget, *, commit: str = "c1") -> TargetState:
        return TargetState(device_uuid=self.supervisor.device.uuid, device=DeviceTarget(
            apps={self.app_uuid: AppTarget(id=77, name="testapp",
                                           releases={commit: release})}))

    def compose_target(self, compose: str, imgs: dict[str, str], *, commit: str = "c1",
                       release_id: int = 1) -> TargetState:
        rel = formats.release_from_compose(compose_yaml=compose, images=imgs,
                                           release_id=release_id)
        return self.target(rel, commit=commit)

    async def converge(self, *, rounds: int = 15) -> None:
        """Reconcile until the plan is empty (bounded)."""
        for _ in range(rounds):
            plan = await self.supervisor.reconcile_once()
            if plan.converged:
                return
            if not plan.actionable:
                await asyncio.sleep(0.5)
        raise AssertionError(f"not converged: {self.supervisor.state.waiting_for}")

    async def containers(self) -> dict[str, ContainerState]:
        observed = await self.engine.observe()
        return {c.service_name: c for c in observed.containers}

    def log_messages(self) -> list[str]:
        self.logs.flush()
        return [r.message for r in self.store.logs(limit=10_000)]


def cleanup_scope(scope: str) -> None:
    """Remove every container, network and volume labelled with this scope."""
    with images.engine_client() as c:
        flt = json.dumps({"label": [f"{naming.SCOPE}={scope}"]})
        for ctr in c.get("/containers/json", params={"all": "1", "filters": flt}).json():
            c.delete(f"/containers/{ctr['Id']}", params={"force": "1"})
        for net in c.get("/networks", params={"filters": flt}).json():
            c.delete(f"/networks/{net['Id']}")
        for vol in c.get("/volumes", params={"filters": flt}).json().get("Volumes") or []:
            c.delete(f"/volumes/{vol['Name']}")


def make_device(*, data_dir: Path, scope: str, app_uuid: str, store: Store | None = None,
                gate: bool = False, socket: str = images.DOCKER_SOCK,
                poll_interval_s: float = 30) -> Device:
    """A supervisor in this process; `gate` adds the disk-space / platform check before
    pulls (as `supervisor run` has)."""
    store = store or Store(path=data_dir / "edgefleet.sqlite")
    logs = LogSink(store=store)
    engine = DockerEngine(socket=socket, scope=scope)
    ctx = DeviceContext(uuid=f"dev-{scope}", lock_root=str(data_dir / "services"), scope=scope)
    sup = Supervisor(engine=engine, store=store, device=ctx, logs=logs,
                     poll_interval_s=poll_interval_s,
                     gate=UpdateGate(engine=engine, logs=logs, cap_s=poll_interval_s)
                     if gate else None)
    return Device(supervisor=sup, engine=engine, store=store, logs=logs, app_uuid=app_uuid,
                  data_dir=data_dir)


@pytest.fixture
async def device(registry: str, unique: str, tmp_path: Path) -> AsyncIterator[Device]:
    dev = make_device(data_dir=tmp_path, scope=f"t{unique}", app_uuid=f"app{unique}")
    try:
        yield dev
    finally:
        try:
            await dev.engine.close()
        finally:
            cleanup_scope(f"t{unique}")


@pytest.fixture(scope="session")
def test_images(registry: str) -> dict[str, Any]:
    """Images in the local registry (not on the engine), built once per session."""
    loop = "trap exit TERM; while true; do sleep 1; done"
    return {
        "web": images.build_and_push("ef-dev-web", "v1",
                                     cmd=["sh", "-c", f"httpd -p 8080; {loop}"]),
        "web2": images.build_and_push("ef-dev-web", "v2", extra="RUN echo v2 > /version",
                                      cmd=["sh", "-c", f"httpd -p 8080; {loop}"]),
        "sleeper": images.build_and_push("ef-dev-sleeper", "v1", cmd=["sh", "-c", loop]),
        "exiter": images.build_and_push("ef-dev-exiter", "v1",
                                        cmd=["sh", "-c", "echo bye; exit 3"]),
    }
