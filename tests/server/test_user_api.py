"""The user API: who sees what, fleets, devices, variables; errors change nothing."""

from __future__ import annotations

import httpx

from tests.server.conftest import DeviceInfo, FleetInfo, Tenant, new_fleet, new_tenant
from tests.server.helpers import make_release
from tests.support.fleet_server import RunningServer


def test_a_user_cannot_see_another_users_fleet(server: RunningServer, device: DeviceInfo
                                               ) -> None:
    owner = device.fleet.tenant
    other = new_tenant(server)
    name = device.fleet.name
    commit = make_release(server, fleet_id=device.fleet.id, composition={"services": {"a": {}}})
    assert [f["name"] for f in other.http.get("/api/v1/fleets").json()] == []
    assert other.http.get("/api/v1/devices").json() == []
    for method, path, body in [
        ("GET", f"/api/v1/fleets/{name}", None),
        ("GET", f"/api/v1/fleets/{device.fleet.uuid}", None),
        ("PATCH", f"/api/v1/fleets/{name}", {"target_release": "latest"}),
        ("DELETE", f"/api/v1/fleets/{name}", None),
        ("POST", f"/api/v1/fleets/{name}/provisioning-keys", {}),
        ("POST", f"/api/v1/fleets/{name}/config", {}),
        ("GET", f"/api/v1/fleets/{name}/releases", None),
        ("GET", f"/api/v1/releases/{commit}", None),
        ("GET", f"/api/v1/devices/{device.uuid}", None),
        ("PATCH", f"/api/v1/devices/{device.uuid}", {"name": "stolen"}),
        ("DELETE", f"/api/v1/devices/{device.uuid}", None),
        ("GET", f"/api/v1/devices?fleet={name}", None),
        ("GET", f"/api/v1/variables?fleet={name}", None),
        ("GET", f"/api/v1/variables?device={device.uuid}", None),
        ("PUT", "/api/v1/variables", {"fleet": name, "name": "X", "value": "1"}),
        ("PUT", "/api/v1/variables", {"device": device.uuid, "name": "X", "value": "1"}),
        ("DELETE", f"/api/v1/variables?fleet={name}&name=X", None),
        ("GET", f"/device/v2/{device.uuid}/logs", None),
    ]:
        r = other.http.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    # nothing changed for the owner
    shown = owner.http.get(f"/api/v1/devices/{device.uuid}").json()
    assert shown["name"] == device.uuid[:7]
    assert owner.http.get("/api/v1/variables", params={"fleet": name}).json() == []
    # the same fleet name is free for the other user (names are per user)
    assert other.http.post("/api/v1/fleets", json={
        "name": name, "device_type": "generic-amd64"}).status_code == 201


def test_keys_of_other_kinds_cannot_use_the_user_api(server: RunningServer,
                                                     device: DeviceInfo) -> None:
    for key in (device.api_key, device.fleet.provisioning_key):
        r = httpx.get(f"{server.url}/api/v1/fleets", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403
    assert httpx.get(f"{server.url}/api/v1/fleets").status_code == 401
    assert httpx.get(f"{server.url}/api/v1/fleets",
                     headers={"Authorization": "Basic abc"}).status_code == 401


def test_only_admins_create_users(server: RunningServer, tenant: Tenant) -> None:
    r = tenant.http.post("/api/v1/users", json={"username": "sneaky"})
    assert r.status_code == 403
    with server.client(server.admin_token) as admin:
        assert admin.post("/api/v1/users", json={"username": tenant.username}
                          ).status_code == 409
        assert admin.post("/api/v1/users", json={"username": "Bad Name"}).status_code == 422
    new = tenant.http.post("/api/v1/tokens", json={"name": "ci"}).json()["key"]
    me = httpx.get(f"{server.url}/api/v1/whoami", headers={"Authorization": f"Bearer {new}"})
    assert me.json()["username"] == tenant.username


def test_fleet_errors(tenant: Tenant, fleet: FleetInfo) -> None:
    h = tenant.http
    assert h.post("/api/v1/fleets", json={"name": fleet.name, "device_type": "generic-amd64"}
                  ).status_code == 409
    assert h.post("/api/v1/fleets", json={"name": "-bad", "device_type": "generic-amd64"}
                  ).status_code == 422
    assert h.post("/api/v1/fleets", json={"name": "ok", "device_type": "toaster"}
                  ).status_code == 400
    assert h.patch(f"/api/v1/fleets/{fleet.name}", json={"target_release": "abc123"}
                   ).status_code == 404
    assert h.get(f"/api/v1/fleets/{fleet.name}").json()["target_release"] == "latest"
    assert "toaster" not in h.get("/api/v1/device-types").json()


def test_variable_errors_change_nothing(server: RunningServer, device: DeviceInfo) -> None:
    h = device.fleet.tenant.http
    name = device.fleet.name
    before = device.http.get(f"/device/v3/{device.uuid}/state").headers["etag"]
    bad = [
        {"fleet": name, "name": "1BAD", "value": "x"},
        {"fleet": name, "name": "GOOD", "value": "x", "service": "bad name"},
        {"kind": "config", "fleet": name, "service": "web", "name": "X", "value": "1"},
        {"name": "NOWHERE", "value": "x"},
        {"fleet": name, "name": "X", "value": "x", "extra": 1},
        {"fleet": new_fleet(device.fleet.tenant).name, "device": device.uuid, "name": "X",
         "value": "x"},
    ]
    for body in bad:
        r = h.put("/api/v1/variables", json=body)
        assert r.status_code in (400, 422), (body, r.text)
    assert h.get("/api/v1/variables", params={"fleet": name}).json() == []
    after = device.http.get(f"/device/v3/{device.uuid}/state", headers={
        "If-None-Match": before})
    assert after.status_code == 304
    # setting twice updates in place
    h.put("/api/v1/variables", json={"fleet": name, "name": "V", "value": "1"})
    h.put("/api/v1/variables", json={"fleet": name, "name": "V", "value": "2"})
    assert [(v["name"], v["value"]) for v in h.get(
        "/api/v1/variables", params={"fleet": name}).json()] == [("V", "2")]


def test_device_update_errors(server: RunningServer, device: DeviceInfo) -> None:
    h = device.fleet.tenant.http
    assert h.patch(f"/api/v1/devices/{device.uuid}", json={"pinned_release": "f" * 32}
                   ).status_code == 404
    assert h.patch(f"/api/v1/devices/{device.uuid}", json={"name": ""}).status_code == 422
    assert h.get("/api/v1/devices/nosuchdevice").status_code == 404
    # a release of another fleet cannot be pinned
    other = new_fleet(device.fleet.tenant)
    commit = make_release(server, fleet_id=other.id, composition={"services": {"a": {}}})
    assert h.patch(f"/api/v1/devices/{device.uuid}", json={"pinned_release": commit}
                   ).status_code == 404
    assert h.get(f"/api/v1/devices/{device.uuid}").json()["pinned_release"] is None


def test_fleet_delete_removes_devices_and_keys(server: RunningServer, device: DeviceInfo
                                               ) -> None:
    h = device.fleet.tenant.http
    assert h.delete(f"/api/v1/fleets/{device.fleet.name}").status_code == 204
    assert device.http.get(f"/device/v3/{device.uuid}/state").status_code == 401
    r = httpx.post(f"{server.url}/device/register", json={
        "application": device.fleet.id, "device_type": "generic-amd64", "uuid": "cd" * 16},
        headers={"Authorization": f"Bearer {device.fleet.provisioning_key}"})
    assert r.status_code == 401


def test_values_the_database_cannot_hold_are_400(server: RunningServer, tenant: Tenant,
                                                 device: DeviceInfo) -> None:
    """(Found by schemathesis: PostgreSQL refuses NUL characters in text.)"""
    r = tenant.http.post("/api/v1/tokens", json={"name": "a\u0000b"})
    assert r.status_code in (201, 400)  # SQLite stores it; PostgreSQL cannot
    assert tenant.http.get("/api/v1/fleets/a%00b").status_code in (400, 404)
    r = device.http.post(f"/device/v2/{device.uuid}/log-stream",
                         content=b'{"message": "nul \\u0000 inside"}\n')
    assert r.status_code == 201 and r.json()["accepted"] == 1
    got = device.http.get(f"/device/v2/{device.uuid}/logs").json()
    assert got[-1]["message"] == "nul \ufffd inside"
