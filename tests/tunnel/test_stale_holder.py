"""A server process that crashed leaves its devices' rows saying it holds their tunnels
(`tunnel_host`). Another process must then say the device is not connected (and clear the
rows), not forward sessions and actions to the dead process."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from edgefleet.client import Login
from edgefleet.server import tables as t
from edgefleet.server.tunnel import hub as hub_module
from edgefleet.server.tunnel.remote import RemoteError, connect
from tests.server.conftest import DeviceInfo, Tenant, new_fleet, new_tenant, register
from tests.support.fleet_server import RunningServer, run_server


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with tempfile.TemporaryDirectory() as tmp, run_server(data_dir=Path(tmp)) as srv:
        yield srv


def dead_url() -> str:
    """The URL of a process that is gone: a port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def held_by(server: RunningServer, device: DeviceInfo, host: str) -> None:
    """What a crashed process leaves behind: the device's tunnel is `host`'s."""
    with server.db.writing() as s:
        s.execute(sa.update(t.Device).where(t.Device.uuid == device.uuid)
                  .values(vpn_connected=True, tunnel_host=host))


def row(server: RunningServer, device: DeviceInfo) -> tuple[bool, str]:
    with server.db.session() as s:
        d = s.execute(sa.select(t.Device).where(t.Device.uuid == device.uuid)).scalar_one()
        return bool(d.vpn_connected), d.tunnel_host


def device_of(server: RunningServer) -> tuple[Tenant, DeviceInfo]:
    tenant = new_tenant(server)
    device = register(server, new_fleet(tenant))
    device.http.patch("/device/v3/state", json={device.uuid: {"api_port": 48484,
                                                               "api_secret": "s" * 32}})
    return tenant, device


async def test_a_session_to_a_device_of_a_dead_process_says_not_connected(
        server: RunningServer) -> None:
    tenant, device = device_of(server)
    held_by(server, device, dead_url())
    with pytest.raises(RemoteError) as refused:
        async with connect(Login(url=server.url, token=tenant.token), device.uuid) as remote:
            await remote.open({"kind": "command", "command": "true"})
    assert "not connected" in str(refused.value), str(refused.value)
    assert row(server, device) == (False, "")

    held_by(server, device, dead_url())
    r = await asyncio.to_thread(tenant.http.post,
                                f"/api/v1/devices/{device.uuid}/actions/identify")
    assert r.status_code == 503 and "not connected" in r.json()["detail"], r.text
    assert row(server, device) == (False, "")


def test_the_rows_of_a_dead_process_are_cleared_without_a_session(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "PROBE_S", 0.3, raising=False)
    silent = socket.socket()  # a process that is there but slow: its rows stay
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    with silent, tempfile.TemporaryDirectory() as tmp, \
            run_server(data_dir=Path(tmp)) as server:
        tenant, gone = device_of(server)
        alive = register(server, gone.fleet)
        slow_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        held_by(server, gone, dead_url())
        held_by(server, alive, slow_url)
        deadline = time.monotonic() + 15
        while row(server, gone) != (False, ""):
            assert time.monotonic() < deadline, "the dead process's tunnel stayed"
            time.sleep(0.2)
        assert row(server, alive) == (True, slow_url)
        status = tenant.http.get(f"/api/v1/devices/{gone.uuid}").json()["status"]
        assert status != "VPN Only"
