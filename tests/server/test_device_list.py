"""The device list renders every device as the single-device path does, in a fixed number of
statements whatever the number of devices, and pages with `limit`/`offset`."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from edgefleet.server import tables as t
from edgefleet.server.views import device_out, device_outs
from tests.server.conftest import FleetInfo, Tenant, new_fleet
from tests.server.helpers import make_release
from tests.support.fleet_server import RunningServer


@contextmanager
def counted(server: RunningServer) -> Iterator[list[str]]:
    """The statements this thread sends to the server's database while inside."""
    me = threading.get_ident()
    seen: list[str] = []

    def hook(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.get_ident() == me:
            seen.append(statement)

    engine = server.db.engine
    sa.event.listen(engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", hook)


def add_device(server: RunningServer, fleet: FleetInfo, **cols: Any) -> int:
    with server.db.writing() as s:
        d = t.Device(uuid=uuid.uuid4().hex, fleet_id=fleet.id, name=f"d-{uuid.uuid4().hex[:6]}",
                     device_type="generic-amd64", created_ms=int(time.time() * 1000), **cols)
        s.add(d)
        s.flush()
        return d.id


def release_id(server: RunningServer, commit: str) -> int:
    with server.db.session() as s:
        rid = s.execute(sa.select(t.Release.id).where(t.Release.commit == commit)).scalar()
        assert rid is not None
        return rid


def varied_fleets(server: RunningServer, tenant: Tenant) -> list[FleetInfo]:
    """Three fleets whose devices take every branch of `device_out`."""
    a, b, c = new_fleet(tenant), new_fleet(tenant), new_fleet(tenant)
    comp = {"services": {"main": {"image": "x"}}}
    a1 = release_id(server, make_release(server, fleet_id=a.id, composition=comp))
    a2 = release_id(server, make_release(server, fleet_id=a.id, composition=comp))
    b1 = release_id(server, make_release(server, fleet_id=b.id, composition=comp))
    now = int(time.time() * 1000)
    with server.db.writing() as s:
        failed = t.Release(fleet_id=a.id, commit=uuid.uuid4().hex, status="failed",
                           created_ms=now)
        s.add(failed)
        s.flush()
        a3 = failed.id
        s.get(t.Fleet, a.id).target_release_id = a1  # type: ignore[union-attr]
        s.get(t.Fleet, c.id).target_release_id = b1  # type: ignore[union-attr]  # not its own
        s.add_all([t.Variable(kind="config", fleet_id=a.id, name="RESIN_SUPERVISOR_POLL_INTERVAL",
                              value="10000"),
                   t.Variable(kind="env", fleet_id=a.id, name="E", value="1")])
    plain = add_device(server, a)
    add_device(server, a, pinned_release_id=a2, running_release_id=a1, status="Idle",
               last_seen_ms=now - 60_000, reported=json.dumps({"cpu": {"n": [1, 2]}}))
    add_device(server, a, pinned_release_id=a3, vpn_connected=True, last_seen_ms=now)
    add_device(server, a, pinned_release_id=b1, running_release_id=b1)
    own = add_device(server, a, running_release_id=a2, last_seen_ms=now - 3_600_000)
    add_device(server, b, last_seen_ms=now - 5_000)
    add_device(server, c)
    with server.db.writing() as s:
        s.add_all([
            t.Variable(kind="config", fleet_id=a.id, device_id=own,
                       name="RESIN_SUPERVISOR_POLL_INTERVAL", value="900000"),
            t.Variable(kind="config", fleet_id=a.id, device_id=own, name="X", value="y"),
            t.DeviceRelease(device_id=own, commit=s.get(t.Release, a1).commit,  # type: ignore
                            update_status="done", services='{"main": {"status": "Running"}}',
                            updated_ms=now),
            t.DeviceRelease(device_id=own, commit=s.get(t.Release, a2).commit,  # type: ignore
                            update_status="downloading", updated_ms=now),
            t.DeviceRelease(device_id=plain, commit="gone", update_status="x",
                            updated_ms=now - 1)])
    return [a, b, c]


def test_list_matches_single_device_path_in_fixed_statements(
        server: RunningServer, tenant: Tenant) -> None:
    varied_fleets(server, tenant)
    page = (sa.select(t.Device).join(t.Fleet, t.Fleet.id == t.Device.fleet_id)
            .where(t.Fleet.owner_id == tenant_id(server, tenant)).order_by(t.Device.id))

    def seen(d: t.Device) -> int | None:
        return server.state.seen(d.id, d.last_seen_ms)  # type: ignore[no-any-return]

    with server.db.session() as s:
        devices = list(s.execute(page).scalars())
        assert len(devices) == 7
        single = [device_out(s, device=d, settings=server.settings, last_seen_ms=seen(d))
                  for d in devices]
    with server.db.session() as s, counted(server) as few:
        batched = device_outs(s, page=page, settings=server.settings, seen=seen)
    assert [d.model_dump() for d in batched] == [d.model_dump() for d in single]
    statuses = {(d.target_release is None, d.update_status, d.heartbeat) for d in batched}
    assert len(statuses) >= 4, statuses  # the set really is varied

    # three times the devices: the same number of statements
    varied_fleets(server, tenant)
    varied_fleets(server, tenant)
    with server.db.session() as s, counted(server) as more:
        assert len(device_outs(s, page=page, settings=server.settings, seen=seen)) == 21
    assert len(more) == len(few) <= 6, more


def tenant_id(server: RunningServer, tenant: Tenant) -> int:
    with server.db.session() as s:
        uid = s.execute(sa.select(t.User.id).where(t.User.username == tenant.username)).scalar()
        assert uid is not None
        return uid


def test_http_list_equals_show_and_pages(server: RunningServer, tenant: Tenant) -> None:
    fleets = varied_fleets(server, tenant)
    r = tenant.http.get("/api/v1/devices")
    assert r.status_code == 200, r.text
    listed = r.json()
    assert len(listed) == 7
    for d in listed:
        one = tenant.http.get(f"/api/v1/devices/{d['uuid']}")
        assert one.status_code == 200, one.text
        assert one.json() == d
    ids = [d["id"] for d in listed]
    assert ids == sorted(ids)
    page = tenant.http.get("/api/v1/devices", params={"limit": 3, "offset": 2}).json()
    assert [d["id"] for d in page] == ids[2:5]
    assert [d["id"] for d in tenant.http.get(
        "/api/v1/devices", params={"offset": 5}).json()] == ids[5:]
    assert tenant.http.get("/api/v1/devices", params={"limit": 0}).json() == []
    one_fleet = tenant.http.get("/api/v1/devices", params={"fleet": fleets[0].name,
                                                           "limit": 2}).json()
    assert [d["id"] for d in one_fleet] == ids[:2]
    bad = tenant.http.get("/api/v1/devices", params={"limit": -1})
    assert bad.status_code == 422, bad.text
