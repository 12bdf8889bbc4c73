"""Two server processes on one PostgreSQL: a dashboard action posted to process A reaches a
device whose tunnel is held by process B (forwarded with the same session and CSRF token),
and so does a web terminal opened on A (its websocket is forwarded to B)."""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import websockets

from tests.support.fleet_server import RunningServer
from tests.support.scaleout import HeldDevice, device_on, two_processes  # noqa: F401

READ_S = 10.0


def signed_in(url: str, username: str, password: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=url, timeout=60)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
    assert token
    assert c.post("/ui/login", data={"username": username, "password": password,
                                     "csrf": token.group(1)}).status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/").text)
    assert csrf
    return c, csrf.group(1)


def in_thread(coroutine: Any) -> None:
    """In a thread of its own: Playwright's browser tests hold this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result(timeout=120)


def audit(a: RunningServer, held: HeldDevice) -> list[tuple[str, str, str]]:
    rows = httpx.get(f"{a.url}/api/v1/audit", params={"device": held.device.uuid},
                     headers={"Authorization": f"Bearer {held.tenant.token}"}).json()
    return [(x["kind"], x["target"], x["result"]) for x in rows]


def test_an_action_on_a_reaches_a_device_on_b(
        two_processes: tuple[RunningServer, RunningServer]) -> None:  # noqa: F811
    in_thread(action_through_a(*two_processes))


async def action_through_a(a: RunningServer, b: RunningServer) -> None:
    async with device_on(b, via=a) as held:
        uuid = held.device.uuid
        client, csrf = await asyncio.to_thread(signed_in, a.url, held.tenant.username,
                                               held.password)
        r = await asyncio.to_thread(client.post, f"/ui/devices/{uuid}/actions/identify",
                                    data={"csrf": csrf})
        assert r.status_code == 303, r.text
        forged = await asyncio.to_thread(client.post, f"/ui/devices/{uuid}/actions/identify")
        assert forged.status_code == 403, "no CSRF token, nothing forwarded"
        client.close()
    assert await asyncio.to_thread(audit, a, held) == [("action", "identify", "HTTP 200")]


def test_a_terminal_on_a_reaches_a_device_on_b(
        two_processes: tuple[RunningServer, RunningServer]) -> None:  # noqa: F811
    in_thread(terminal_through_a(*two_processes))


async def terminal_through_a(a: RunningServer, b: RunningServer) -> None:
    async with device_on(b, via=a) as held:
        uuid = held.device.uuid
        client, csrf = await asyncio.to_thread(signed_in, a.url, held.tenant.username,
                                               held.password)
        cookie = client.cookies["edgefleet_session"]
        client.close()
        url = (a.url.replace("http://", "ws://") + f"/ui/devices/{uuid}/terminal/ws"
               f"?csrf={csrf}&service=frontend&rows=30&cols=100")
        async with websockets.connect(url, origin=websockets.Origin(a.url), additional_headers={
                "Cookie": f"edgefleet_session={cookie}"}, open_timeout=20) as ws:

            async def until(text: bytes) -> bytes:
                got = b""
                while text not in got:
                    frame = await asyncio.wait_for(ws.recv(), READ_S)
                    assert isinstance(frame, bytes), f"a text frame before the output: {frame}"
                    got += frame
                return got

            assert b"shell frontend 30x100" in await until(b"\r\n"), "the device's shell"
            await ws.send(b"hello")
            await until(b"HELLO")
            await ws.send(json.dumps({"resize": [40, 120]}))
            await until(b"resized 40x120"), "a resize reaches the PTY as a resize"
            await ws.send(b"exit")
            end = await asyncio.wait_for(ws.recv(), READ_S)
            assert isinstance(end, str) and json.loads(end) == {"exit": 3}, end
    assert ("shell", "frontend", "exit 3") in await asyncio.to_thread(audit, a, held)
