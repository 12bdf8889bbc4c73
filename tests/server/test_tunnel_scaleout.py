"""Two server processes on one PostgreSQL: a session and an action that arrive at process A
reach a device whose tunnel is held by process B (forwarded with the user's credentials)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import websockets

from edgefleet.client import Login
from edgefleet.server.tunnel.remote import connect
from edgefleet.tunnel.mux import Mux
from edgefleet.tunnel.stream import Stream
from edgefleet.tunnel.websocket import WebsocketsTransport
from tests.server.conftest import DeviceInfo, new_fleet, new_tenant, register
from tests.support.fleet_server import PG_URL, RunningServer, pg_schema_url, run_server


@pytest.fixture
def two_processes() -> Iterator[tuple[RunningServer, RunningServer]]:
    if not PG_URL:
        pytest.skip("EDGEFLEET_TEST_PG_URL is not set")
    with ExitStack() as stack:
        url = stack.enter_context(pg_schema_url(PG_URL))
        servers = [stack.enter_context(run_server(
            data_dir=Path(stack.enter_context(tempfile.TemporaryDirectory())),
            database_url=url)) for _ in range(2)]
        yield servers[0], servers[1]


async def fake_device(stream: Stream) -> None:
    """A device that runs `command` as upper-casing and answers HTTP with 200 OK."""
    await stream.accept()
    if stream.request["kind"] == "command":
        data = b""
        while (chunk := await stream.read()).kind != "eof":
            data += chunk.data
        await stream.write((stream.request["command"] + ":").encode() + data.upper())
        await stream.send_exit(0)
        await stream.write_eof()
        return
    head = b""
    while b"\r\n\r\n" not in head:
        head += (await stream.read()).data
    await stream.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2"
                       b"\r\n\r\nOK")
    await stream.write_eof()
    while (await stream.read()).kind != "eof":
        pass


async def test_a_session_through_a_reaches_a_device_on_b(
        two_processes: tuple[RunningServer, RunningServer]) -> None:
    a, b = two_processes
    tenant = new_tenant(a)
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
        await mux.close()
        await runner

    audit = (await asyncio.to_thread(
        httpx.get, f"{a.url}/api/v1/audit", params={"device": device.uuid},
        headers={"Authorization": f"Bearer {tenant.token}"})).json()
    assert {(x["kind"], x["result"]) for x in audit} >= {("command", "exit 0"),
                                                          ("action", "HTTP 200")}
