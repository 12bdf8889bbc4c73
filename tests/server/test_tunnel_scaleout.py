"""Two server processes on one PostgreSQL: a session and an action that arrive at process A
reach a device whose tunnel is held by process B (forwarded with the user's credentials)."""

from __future__ import annotations

import asyncio

import httpx

from edgefleet.client import Login
from edgefleet.server.tunnel.remote import connect
from tests.support.fleet_server import RunningServer
from tests.support.scaleout import device_on, two_processes  # noqa: F401


async def test_a_session_through_a_reaches_a_device_on_b(
        two_processes: tuple[RunningServer, RunningServer]) -> None:  # noqa: F811
    a, b = two_processes
    async with device_on(b, via=a) as held:
        tenant, device = held.tenant, held.device
        async with connect(Login(url=a.url, token=tenant.token), device.uuid) as remote:
            stream = await remote.open({"kind": "command", "command": "up"})
            await stream.write(b"hello")
            await stream.write_eof()
            out, code = b"", None
            while (chunk := await stream.read()).kind != "eof":
                out += chunk.data
                code = chunk.code if chunk.kind == "exit" else code
        assert out == b"up:HELLO" and code == 0

        r = await asyncio.to_thread(tenant.http.post,
                                    f"{a.url}/api/v1/devices/{device.uuid}/actions/identify")
        assert r.status_code == 200 and r.json()["answer"] == "OK", r.text

    audit = (await asyncio.to_thread(
        httpx.get, f"{a.url}/api/v1/audit", params={"device": device.uuid},
        headers={"Authorization": f"Bearer {tenant.token}"})).json()
    assert {(x["kind"], x["result"]) for x in audit} >= {("command", "exit 0"),
                                                          ("action", "HTTP 200")}
