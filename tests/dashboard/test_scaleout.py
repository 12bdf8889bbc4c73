"""Two server processes on one PostgreSQL: a dashboard action posted to process A reaches a
device whose tunnel is held by process B (forwarded with the same session and CSRF token)."""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import websockets

from edgefleet.tunnel.mux import Mux
from edgefleet.tunnel.websocket import WebsocketsTransport
from tests.server.conftest import DeviceInfo, new_fleet, new_tenant, register
from tests.server.test_tunnel_scaleout import fake_device, two_processes  # noqa: F401
from tests.support.fleet_server import RunningServer


def signed_in(url: str, username: str, password: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=url, timeout=60)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
    assert token
    assert c.post("/ui/login", data={"username": username, "password": password,
                                     "csrf": token.group(1)}).status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/").text)
    assert csrf
    return c, csrf.group(1)


def test_an_action_on_a_reaches_a_device_on_b(
        two_processes: tuple[RunningServer, RunningServer]) -> None:  # noqa: F811
    """In a thread of its own: Playwright's browser tests hold this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, action_through_a(*two_processes)).result(timeout=120)


async def action_through_a(a: RunningServer, b: RunningServer) -> None:
    tenant = new_tenant(a)
    tenant.http.put(f"/api/v1/users/{tenant.username}/password",
                    json={"password": "scale out 1"}).raise_for_status()
    device: DeviceInfo = register(a, new_fleet(tenant))
    device.http.patch("/device/v3/state", json={device.uuid: {"api_port": 48484,
                                                               "api_secret": "s" * 32}})
    url = b.url.replace("http://", "ws://") + f"/device/v3/{device.uuid}/tunnel"
    async with websockets.connect(url, additional_headers={
            "Authorization": f"Bearer {device.api_key}"}) as conn:
        mux = Mux(WebsocketsTransport(conn), initiator=True, handler=fake_device)
        runner = asyncio.create_task(mux.run())
        deadline = time.monotonic() + 10
        while (await asyncio.to_thread(tenant.http.get, f"/api/v1/devices/{device.uuid}")
               ).json()["status"] != "VPN Only":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        client, csrf = await asyncio.to_thread(signed_in, a.url, tenant.username,
                                               "scale out 1")
        r = await asyncio.to_thread(client.post,
                                    f"/ui/devices/{device.uuid}/actions/identify",
                                    data={"csrf": csrf})
        assert r.status_code == 303, r.text
        forged = await asyncio.to_thread(client.post,
                                         f"/ui/devices/{device.uuid}/actions/identify")
        assert forged.status_code == 403, "no CSRF token, nothing forwarded"
        client.close()
        await mux.close()
        await runner
    audit = (await asyncio.to_thread(
        httpx.get, f"{a.url}/api/v1/audit", params={"device": device.uuid},
        headers={"Authorization": f"Bearer {tenant.token}"})).json()
    assert [(x["kind"], x["target"], x["result"]) for x in audit] == [
        ("action", "identify", "HTTP 200")]
