"""Fixtures: one real fleet server per database backend (SQLite and PostgreSQL), users,
fleets and registered devices."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import images
from tests.support.fleet_server import PG_URL, RunningServer, pg_schema_url, run_server

HEARTBEAT_TIMEOUT_S = 1.5
OFFLINE_GRACE_S = 1.5


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A fleet server on SQLite, then on PostgreSQL (a fresh schema per run)."""
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="efsrv-")))
        url = None
        if request.param == "postgres":
            if not PG_URL:
                if os.environ.get("CI"):
                    pytest.fail("EDGEFLEET_TEST_PG_URL is not set (scripts/test sets it)")
                pytest.skip("EDGEFLEET_TEST_PG_URL is not set")
            url = stack.enter_context(pg_schema_url(PG_URL))
        yield stack.enter_context(run_server(
            data_dir=data_dir, database_url=url, registry=images.REGISTRY,
            heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
            offline_grace_s=OFFLINE_GRACE_S, log_rate_per_s=50))


@dataclass
class Tenant:
    """A user of the server with its own client."""

    username: str
    token: str
    http: httpx.Client


@dataclass
class FleetInfo:
    tenant: Tenant
    name: str
    id: int
    uuid: str
    provisioning_key: str


@dataclass
class DeviceInfo:
    fleet: FleetInfo
    uuid: str
    api_key: str
    id: int
    http: httpx.Client
    """A client sending this device's key."""


def new_tenant(server: RunningServer) -> Tenant:
    with server.client(server.admin_token) as admin:
        name = f"u{uuid.uuid4().hex[:10]}"
        r = admin.post("/api/v1/users", json={"username": name})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
    return Tenant(username=name, token=token, http=server.client(token))


def new_fleet(tenant: Tenant, device_type: str = "generic-amd64") -> FleetInfo:
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    r = tenant.http.post("/api/v1/fleets", json={"name": name, "device_type": device_type})
    assert r.status_code == 201, r.text
    f = r.json()
    k = tenant.http.post(f"/api/v1/fleets/{name}/provisioning-keys", json={})
    assert k.status_code == 201, k.text
    return FleetInfo(tenant=tenant, name=name, id=f["id"], uuid=f["uuid"],
                     provisioning_key=k.json()["key"])


def register(server: RunningServer, fleet: FleetInfo) -> DeviceInfo:
    dev_uuid = uuid.uuid4().hex
    key = uuid.uuid4().hex
    r = httpx.post(f"{server.url}/device/register",
                   headers={"Authorization": f"Bearer {fleet.provisioning_key}"},
                   json={"application": fleet.id, "device_type": "generic-amd64",
                         "uuid": dev_uuid, "api_key": key, "supervisor_version": "0.1.0",
                         "os_version": "Debian 12", "os_variant": "dev",
                         "mac_address": "02:00:00:00:00:01"})
    assert r.status_code == 201, r.text
    assert r.json() == {"id": r.json()["id"], "uuid": dev_uuid, "api_key": key}
    return DeviceInfo(fleet=fleet, uuid=dev_uuid, api_key=key, id=r.json()["id"],
                      http=server.client(key))


@pytest.fixture
def tenant(server: RunningServer) -> Iterator[Tenant]:
    t = new_tenant(server)
    yield t
    t.http.close()


@pytest.fixture
def fleet(tenant: Tenant) -> FleetInfo:
    return new_fleet(tenant)


@pytest.fixture
def device(server: RunningServer, fleet: FleetInfo) -> Iterator[DeviceInfo]:
    d = register(server, fleet)
    yield d
    d.http.close()
