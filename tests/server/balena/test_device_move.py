"""`balena device move` over HTTP: `PATCH /v7/device(<id>)` with `belongs_to__application`
moves a device to another fleet of the user, of a device type of the same CPU architecture;
its target state becomes that fleet's. The device of another user, a fleet of another user
and an incompatible device type are refused."""

from __future__ import annotations

from tests.server.conftest import DeviceInfo, Tenant, new_fleet, new_tenant
from tests.support.fleet_server import RunningServer


def fleet_of(tenant: Tenant, device: DeviceInfo) -> str:
    r = tenant.http.get(f"/api/v1/devices/{device.uuid}")
    assert r.status_code == 200, r.text
    return str(r.json()["fleet"])


def test_device_moves_to_a_compatible_fleet(server: RunningServer, tenant: Tenant,
                                            device: DeviceInfo) -> None:
    http, home = tenant.http, device.fleet
    assert http.post("/v7/device_environment_variable", json={
        "device": device.id, "name": "SITE", "value": "north"}).status_code == 201
    pi = new_fleet(tenant, "raspberrypi4-64")
    r = http.patch(f"/v7/device({device.id})", json={"belongs_to__application": pi.id})
    assert r.status_code == 400, r.text
    assert (f"fleet '{pi.name}' is for raspberrypi4-64 (aarch64) devices: move it to a fleet "
            "for amd64 devices") in r.json()["error"]["message"]
    assert fleet_of(tenant, device) == home.name

    nuc = new_fleet(tenant, "intel-nuc")  # another device type, the same architecture
    r = http.patch(f"/v7/device({device.id})", json={"belongs_to__application": nuc.id})
    assert r.status_code == 200, r.text
    assert fleet_of(tenant, device) == nuc.name
    state = device.http.get(f"/device/v3/{device.uuid}/state").json()[device.uuid]
    assert list(state["apps"]) == [nuc.uuid], state
    got = http.get("/api/v1/variables", params={"fleet": nuc.name,
                                                "device": device.uuid}).json()
    assert [(v["name"], v["value"]) for v in got if v["level"] == "device"] == [
        ("SITE", "north")], got  # the device's own variables moved with it
    audit = http.get("/api/v1/audit", params={"device": device.uuid})
    assert audit.status_code == 200, audit.text
    assert [e["target"] for e in audit.json() if e["action"] == "device.move"] == [
        f"from {home.name} to {nuc.name}"], audit.text


def test_only_own_devices_move_to_own_fleets(server: RunningServer, tenant: Tenant,
                                             device: DeviceInfo) -> None:
    other = new_tenant(server)
    try:
        theirs = new_fleet(other)
        r = tenant.http.patch(f"/v7/device({device.id})",
                              json={"belongs_to__application": theirs.id})
        assert r.status_code == 404, r.text  # as balena answers for a fleet it cannot see
        r = other.http.patch(f"/v7/device({device.id})",
                             json={"belongs_to__application": theirs.id})
        assert r.status_code == 200  # addresses no row the user can see: changes nothing
    finally:
        other.http.close()
    assert fleet_of(tenant, device) == device.fleet.name


def test_moving_needs_device_update_in_both_fleets(server: RunningServer, tenant: Tenant,
                                                   device: DeviceInfo) -> None:
    """A viewer of the owner's organization may not move its devices (403, as the native
    API answers); an operator may (`device.update`, as the dashboard's bulk move)."""
    nuc = new_fleet(tenant, "intel-nuc")
    member = new_tenant(server)
    try:
        for role, status in (("viewer", 403), ("operator", 200)):
            r = tenant.http.put(f"/api/v1/orgs/{tenant.username}/members",
                                json={"username": member.username, "role": role})
            assert r.status_code == 200, r.text
            r = member.http.patch(f"/v7/device({device.id})",
                                  json={"belongs_to__application": nuc.id})
            assert r.status_code == status, (role, r.text)
            assert fleet_of(tenant, device) == (nuc.name if status == 200
                                                else device.fleet.name)
    finally:
        member.http.close()
