"""`GET /api/v3/delta` on a real server process with the real registry: a device of the fleet
gets a delta between two release images (202 while it is made, then 200; the download is the
announced size and is counted); only device keys of that fleet may ask (another fleet's device
gets 404, a user token 403, no key 401); a ref outside the registry is refused."""

from __future__ import annotations

import io
import os
import time
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from edgefleet.engine.delta import read_header
from edgefleet.server import tables as t
from tests.server.conftest import DeviceInfo, Tenant, new_fleet, register
from tests.server.helpers import make_release
from tests.support import images
from tests.support.fleet_server import RunningServer

pytestmark = [pytest.mark.engine]



@pytest.fixture(scope="module")
def two_images(registry: str) -> tuple[str, str]:
    repo = f"deltatest{uuid.uuid4().hex[:8]}/app"
    blob = bytearray(os.urandom(4 << 20))
    a = images.pushed_with_file(repo, "v1", bytes(blob))
    blob[1_000_000:1_000_010] = b"0123456789"
    return a, images.pushed_with_file(repo, "v2", bytes(blob))


def _ask(dev: DeviceInfo, src: str, dest: str) -> httpx.Response:
    return dev.http.get("/api/v3/delta", params={"src": src, "dest": dest})


def test_a_device_gets_a_small_delta_and_only_its_fleet_may_ask(
    server: RunningServer, tenant: Tenant, device: DeviceInfo, two_images: tuple[str, str]
) -> None:
    src, dest = two_images
    make_release(server, fleet_id=device.fleet.id, composition={"services": {"app": {}}},
                 refs={"app": src})
    make_release(server, fleet_id=device.fleet.id, composition={"services": {"app": {}}},
                 refs={"app": dest})
    other = register(server, new_fleet(tenant))
    try:
        assert _ask(other, src, dest).status_code == 404
    finally:
        other.http.close()
    assert tenant.http.get("/api/v3/delta", params={"src": src, "dest": dest}
                           ).status_code == 403
    assert httpx.get(f"{server.url}/api/v3/delta", params={"src": src, "dest": dest}
                     ).status_code == 401

    first = _ask(device, src, dest)
    assert first.status_code in (200, 202), first.text
    body: dict[str, Any] = first.json()
    deadline = time.monotonic() + 60
    while first.status_code == 202 and time.monotonic() < deadline:
        assert 0 <= body["progress"] <= 1 and first.headers["retry-after"]
        time.sleep(0.3)
        first = _ask(device, src, dest)
        body = first.json()
    assert first.status_code == 200, first.text
    assert body["pull_bytes"] > 4 << 20 and 0 < body["size"] < 64 << 10
    assert body["cpu_s"] > 0
    with server.client(server.admin_token) as admin:
        served0 = admin.get("/api/v3/delta-stats").json()["served_bytes"]
        got = device.http.get(body["location"])
        assert got.status_code == 200 and len(got.content) == body["size"]
        assert admin.get("/api/v3/delta-stats").json()["served_bytes"] - served0 == body["size"]
    header = read_header(io.BytesIO(got.content))
    assert header.dest == body["image_id"]
    assert [p.kind for p in header.layers].count("zstd") == 1  # the base layers are reused
    assert tenant.http.get("/api/v3/delta-stats").status_code == 403  # not an admin
    assert device.http.get(body["location"]).status_code == 200  # cached: asked again


def test_refs_outside_the_fleet_or_registry_are_refused(device: DeviceInfo) -> None:
    r = _ask(device, "docker.io/library/busybox@sha256:" + "0" * 64,
             f"{images.REGISTRY}/x/y@sha256:" + "1" * 64)
    assert r.status_code == 404 and "not an image of a release" in r.text
    assert _ask(device, "a", "a").status_code == 400


def test_the_server_makes_a_devices_delta_before_it_asks(
    server: RunningServer, device: DeviceInfo, two_images: tuple[str, str]
) -> None:
    """A device with deltas on runs release B and is pinned to release A: the server starts
    making the B → A delta when the target changes, so the device's first ask gets the delta
    itself (one round trip, `Accept: application/octet-stream`), not a 202 to wait on."""
    a, b = two_images
    commit_a = make_release(server, fleet_id=device.fleet.id,
                            composition={"services": {"app": {}}}, refs={"app": a})
    commit_b = make_release(server, fleet_id=device.fleet.id,
                            composition={"services": {"app": {}}}, refs={"app": b})
    with server.db.session() as s:
        ids = dict(s.execute(sa.select(t.Release.commit, t.Release.id).where(
            t.Release.commit.in_([commit_a, commit_b]))).all())
        row = s.get(t.Device, device.id)
        assert row is not None
        row.running_release_id, row.pinned_release_id = ids[commit_b], ids[commit_a]
        s.add(t.Variable(kind="config", fleet_id=device.fleet.id, device_id=None, service="",
                         name="BALENA_SUPERVISOR_DELTA", value="1"))
        server.db.bump_generation(s)
    server.state.refresh_generation()

    def job() -> dict[str, Any] | None:
        with server.client(server.admin_token) as admin:
            jobs = admin.get("/api/v3/delta-stats").json()["deltas"]
        return next((j for j in jobs if j["src"] == b and j["dest"] == a), None)

    deadline = time.monotonic() + 60
    while (found := job()) is None or found["status"] == "pending":
        assert time.monotonic() < deadline, "the server did not start the B -> A delta"
        time.sleep(0.3)
    assert found["status"] == "ready", found
    got = device.http.get("/api/v3/delta", params={"src": b, "dest": a},
                          headers={"Accept": "application/octet-stream"})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/octet-stream"
    assert len(got.content) == int(got.headers["x-delta-size"]) == found["size"]
    assert int(got.headers["x-delta-new-bytes"]) == found["new_bytes"] > 0
    assert read_header(io.BytesIO(got.content)).dest == found["image_id"]
