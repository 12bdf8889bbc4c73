"""A supervisor on the real dockerd with its API served by uvicorn on 127.0.0.1 (ephemeral
port), its loop running, and a two-app target helper."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.device.api.app import create_app
from edgefleet.device.api.context import ApiContext, HostCommands
from edgefleet.device.api.server import ApiServer, bind
from edgefleet.device.local_mode import LocalMode
from edgefleet.device.targets import TargetSource
from edgefleet.model import formats
from edgefleet.model.config import DeviceConfig
from edgefleet.model.target import AppTarget, DeviceTarget, TargetState
from tests.device.conftest import Device

LOOP = "trap 'exit 0' TERM; while true; do echo tick $BALENA_SERVICE_NAME; sleep 1; done"
APP_A = f"""
services:
  main:
    command: ["sh", "-c", "{LOOP}"]
    labels: {{io.balena.features.supervisor-api: "1"}}
    volumes: ["data:/data"]
  side:
    command: ["sh", "-c", "{LOOP}"]
volumes:
  data:
"""
APP_B = f"""
services:
  other:
    command: ["sh", "-c", "{LOOP}"]
"""


@dataclass
class Api:
    """The API under test and the device behind it."""

    dev: Device
    ctx: ApiContext
    client: httpx.AsyncClient
    url: str
    tmp: Path
    updates: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.ctx.keys.global_key()

    @property
    def b_uuid(self) -> str:
        return f"b{self.dev.app_uuid}"

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def two_apps(self, image: str, *, commit: str = "c1") -> TargetState:
        rel_a = formats.release_from_compose(compose_yaml=APP_A, images={
            "main": image, "side": image})
        rel_b = formats.release_from_compose(compose_yaml=APP_B, images={"other": image},
                                             first_service_id=10, first_image_id=10)
        return TargetState(device_uuid=self.dev.supervisor.device.uuid, device=DeviceTarget(
            name="apidevice", apps={
                self.dev.app_uuid: AppTarget(id=77, name="appa", releases={commit: rel_a}),
                self.b_uuid: AppTarget(id=78, name="appb", releases={commit: rel_b})}))

    async def running(self, image: str) -> dict[str, Any]:
        """Set the two-app target and wait until its three services run."""
        self.dev.supervisor.set_target(target=self.two_apps(image), source=TargetSource.DIRECT)
        state = self.dev.supervisor.state
        try:
            await wait_for(self._all_running, what="three running services")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; supervisor: {state.app_state}, last error: "
                                 f"{state.last_error or 'none'}") from None
        return await self.dev.containers()

    async def _all_running(self) -> bool:
        sup = self.dev.supervisor
        ctrs = await self.dev.containers()
        return (sup.state.app_state == "applied" and len(ctrs) == 3
                and all(c.status == "running" for c in ctrs.values()))


async def wait_for(check: Callable[[], Awaitable[bool]], *, what: str,
                   limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def make_ctx(dev: Device, tmp: Path, *, managed: bool = True,
             **config: Any) -> ApiContext:
    cfg = DeviceConfig.model_validate(
        {**({"apiEndpoint": "http://127.0.0.1:9"} if managed else {}), **config})
    local = LocalMode(supervisor=dev.supervisor, config=cfg)
    return ApiContext.of(
        dev.supervisor, config=cfg, local=local,
        host=HostCommands(reboot=("touch", str(tmp / "rebooted")),
                          shutdown=("touch", str(tmp / "shut-down")), delay_s=0),
        journalctl="journalctl", journal_dirs=(str(tmp / "no-journal"),))


@pytest.fixture
def api_config() -> dict[str, Any]:
    """config.json fields for the `api` fixture (override in a module to change them)."""
    return {"managed": True}


@pytest.fixture
async def api(device: Device, tmp_path: Path, api_config: dict[str, Any]
              ) -> AsyncIterator[Api]:
    ctx = make_ctx(device, tmp_path, **api_config)
    server = ApiServer(app=create_app(ctx=ctx), sockets=[bind(host="127.0.0.1", port=0)])
    ctx.api_port = server.port
    result = Api(dev=device, ctx=ctx, client=httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", timeout=60), url="", tmp=tmp_path)
    result.url = f"http://127.0.0.1:{server.port}"
    ctx.on_update_requested = lambda: result.updates.append("update")
    tasks = [asyncio.create_task(server.run()), asyncio.create_task(device.supervisor.run())]
    try:
        yield result
    finally:
        await result.client.aclose()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
