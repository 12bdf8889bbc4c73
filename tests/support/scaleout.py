"""Scale-out set-up shared by the tunnel's and the dashboard's tests: two server processes on
one PostgreSQL (`two_processes`), and a fake device whose tunnel one of them holds
(`device_on`), answering commands, shells and HTTP (`fake_device`)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

from edgefleet.tunnel.mux import Mux
from edgefleet.tunnel.stream import Stream
from edgefleet.tunnel.websocket import WebsocketsTransport
from tests.server.conftest import DeviceInfo, Tenant, new_fleet, new_tenant, register
from tests.support.fleet_server import PG_URL, RunningServer, pg_schema_url, run_server

TUNNEL_UP_S = 10.0


@pytest.fixture
def two_processes() -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two server processes (uvicorn threads with their own app and hub) on one fresh
    PostgreSQL schema; skipped without EDGEFLEET_TEST_PG_URL."""
    if not PG_URL:
        pytest.skip("EDGEFLEET_TEST_PG_URL is not set")
    with ExitStack() as stack:
        url = stack.enter_context(pg_schema_url(PG_URL))
        servers = [stack.enter_context(run_server(
            data_dir=Path(stack.enter_context(tempfile.TemporaryDirectory())),
            database_url=url)) for _ in range(2)]
        yield servers[0], servers[1]


async def fake_device(stream: Stream) -> None:
    """A device that runs `command` as upper-casing, opens a shell that echoes keystrokes
    upper-cased (and says when it is resized; `exit` ends it with code 3), and answers HTTP
    with 200 OK."""
    await stream.accept()
    kind = stream.request["kind"]
    if kind == "command":
        data = b""
        while (chunk := await stream.read()).kind != "eof":
            data += chunk.data
        await stream.write((stream.request["command"] + ":").encode() + data.upper())
        await stream.send_exit(0)
        await stream.write_eof()
        return
    if kind == "shell":
        request = stream.request
        await stream.write(f"shell {request.get('service') or 'host'} "
                           f"{request.get('rows')}x{request.get('cols')}\r\n".encode())
        while (chunk := await stream.read()).kind != "eof":
            if chunk.kind == "resize":
                await stream.write(f"resized {chunk.rows}x{chunk.cols}\r\n".encode())
            elif b"exit" in bytes(chunk.data):
                break
            else:
                await stream.write(bytes(chunk.data).upper())
        await stream.send_exit(3)
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


@dataclass
class HeldDevice:
    """A tenant (with a dashboard password), its device, and the process holding the
    device's tunnel."""

    tenant: Tenant
    device: DeviceInfo
    password: str
    holder: RunningServer


@asynccontextmanager
async def device_on(holder: RunningServer, *, via: RunningServer) -> AsyncIterator[HeldDevice]:
    """A new tenant (made through `via`) with a device whose tunnel `holder` holds, running
    `fake_device`; the tunnel closes on leaving."""
    tenant = new_tenant(via)
    password = f"scale out {time.monotonic_ns()}"
    tenant.http.put(f"/api/v1/users/{tenant.username}/password",
                    json={"password": password}).raise_for_status()
    device = register(via, new_fleet(tenant))
    device.http.patch("/device/v3/state", json={device.uuid: {"api_port": 48484,
                                                               "api_secret": "s" * 32}})
    url = holder.url.replace("http://", "ws://") + f"/device/v3/{device.uuid}/tunnel"
    async with websockets.connect(url, additional_headers={
            "Authorization": f"Bearer {device.api_key}"}) as conn:
        mux = Mux(WebsocketsTransport(conn), initiator=True, handler=fake_device)
        runner = asyncio.create_task(mux.run())
        deadline = time.monotonic() + TUNNEL_UP_S
        while (await asyncio.to_thread(tenant.http.get, f"/api/v1/devices/{device.uuid}")
               ).json()["status"] != "VPN Only":
            assert time.monotonic() < deadline, "the device's tunnel did not come up"
            await asyncio.sleep(0.1)
        try:
            yield HeldDevice(tenant=tenant, device=device, password=password, holder=holder)
        finally:
            await mux.close()
            await runner
