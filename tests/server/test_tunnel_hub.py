"""The server's tunnel hub against a real server (SQLite and PostgreSQL): who may connect,
device status from the tunnel and heartbeats (seed 000 §12), and "poll now" on a change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets

from edgefleet.tunnel.mux import Mux
from edgefleet.tunnel.websocket import WebsocketsTransport
from tests.server.conftest import HEARTBEAT_TIMEOUT_S, OFFLINE_GRACE_S, DeviceInfo
from tests.support.fleet_server import RunningServer


def ws_url(server: RunningServer, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


@asynccontextmanager
async def tunnel(server: RunningServer, device: DeviceInfo,
                 controls: list[dict[str, Any]] | None = None) -> AsyncIterator[Mux]:
    """A device's tunnel as a light client (the real device side is tested end to end)."""
    async with websockets.connect(ws_url(server, f"/device/v3/{device.uuid}/tunnel"),
                                  additional_headers={"Authorization":
                                                      f"Bearer {device.api_key}"}) as conn:
        mux = Mux(WebsocketsTransport(conn), initiator=True,
                  on_control=(controls.append if controls is not None else None))
        runner = asyncio.create_task(mux.run())
        try:
            yield mux
        finally:
            await mux.close()
            await runner


async def status(device: DeviceInfo) -> str:
    def get() -> str:
        r = device.fleet.tenant.http.get(f"/api/v1/devices/{device.uuid}")
        return str(r.json()["status"])
    return await asyncio.to_thread(get)


async def wait_status(device: DeviceInfo, want: str, *, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while (got := await status(device)) != want:
        assert time.monotonic() < deadline, f"status {got!r}, waited for {want!r}"
        await asyncio.sleep(0.1)


async def poll(device: DeviceInfo) -> None:
    await asyncio.to_thread(device.http.get, f"/device/v3/{device.uuid}/state")


async def test_status_follows_tunnel_and_heartbeat(server: RunningServer,
                                                   device: DeviceInfo) -> None:
    assert await status(device) == "Offline"
    async with tunnel(server, device):
        await wait_status(device, "VPN Only", within_s=5)  # tunnel, never polled
        await poll(device)
        assert await status(device) == "Online"
        # no polls: the heartbeat runs out while the tunnel stays
        await asyncio.sleep(HEARTBEAT_TIMEOUT_S + OFFLINE_GRACE_S + 0.5)
        assert await status(device) == "VPN Only"
        await poll(device)
        assert await status(device) == "Online"
    await wait_status(device, "Heartbeat Only", within_s=5)  # tunnel stopped, polls go on
    await asyncio.sleep(HEARTBEAT_TIMEOUT_S + OFFLINE_GRACE_S + 0.5)
    assert await status(device) == "Offline"


async def test_only_the_device_key_opens_its_tunnel(server: RunningServer,
                                                    device: DeviceInfo) -> None:
    url = ws_url(server, f"/device/v3/{device.uuid}/tunnel")
    for key in (None, device.fleet.tenant.token, device.fleet.provisioning_key, "x" * 32):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with websockets.connect(url, additional_headers=headers) as conn:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(conn.recv(), timeout=5)
            assert conn.close_code in (4401, 4403), (key, conn.close_code)
    assert await status(device) == "Offline"


async def test_a_target_change_tells_the_device_to_poll(server: RunningServer,
                                                        device: DeviceInfo) -> None:
    controls: list[dict[str, Any]] = []
    async with tunnel(server, device, controls):
        await asyncio.sleep(0.5)
        controls.clear()
        r = await asyncio.to_thread(
            device.fleet.tenant.http.put, "/api/v1/variables",
            json={"kind": "config", "device": device.uuid,
                  "name": "BALENA_SUPERVISOR_POLL_INTERVAL", "value": "600000"})
        assert r.status_code in (200, 201), r.text
        deadline = time.monotonic() + 5
        while not controls:
            assert time.monotonic() < deadline, "no poll-now message within 5 s"
            await asyncio.sleep(0.05)
        assert controls[0]["op"] == "poll"
        target = await asyncio.to_thread(device.http.get, f"/device/v3/{device.uuid}/state")
        assert controls[0]["etag"] == target.headers["etag"], \
            "the poll-now names the new target (a stale process is polled again)"


async def test_a_session_to_an_unconnected_device_is_refused_clearly(
        server: RunningServer, device: DeviceInfo) -> None:
    r = await asyncio.to_thread(device.fleet.tenant.http.post,
                                f"/api/v1/devices/{device.uuid}/actions/identify")
    assert r.status_code == 409 and "has not reported its supervisor API key" in r.text
    await asyncio.to_thread(device.http.patch, "/device/v3/state", json={
        device.uuid: {"api_port": 48484, "api_secret": "k" * 32}})
    deadline = time.monotonic() + 5
    while (r := await asyncio.to_thread(
            device.fleet.tenant.http.post,
            f"/api/v1/devices/{device.uuid}/actions/identify")).status_code == 409:
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.1)
    assert r.status_code == 503 and "not connected to the tunnel" in r.text, r.text
