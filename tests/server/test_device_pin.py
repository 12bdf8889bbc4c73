"""`PATCH /device/v3/{uuid}`: a preloaded device pins itself (pinDevice), on SQLite and
PostgreSQL; who may, which releases, and unpinning by the user (API and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from edgefleet.cli import app
from edgefleet.server import releases
from edgefleet.server import tables as t
from tests.server.conftest import DeviceInfo, FleetInfo, new_fleet, register
from tests.server.helpers import make_release
from tests.support.fleet_server import RunningServer

COMPOSE = {"services": {"web": {"restart": "always"}}}


def target_commit(device: DeviceInfo) -> str:
    doc = device.http.get(f"/device/v3/{device.uuid}/state").json()
    return next(iter(doc[device.uuid]["apps"][device.fleet.uuid]["releases"]))


def pinned(device: DeviceInfo) -> str | None:
    r = device.fleet.tenant.http.get(f"/api/v1/devices/{device.uuid}")
    assert r.status_code == 200, r.text
    value: str | None = r.json()["pinned_release"]
    return value


def failed_release(server: RunningServer, fleet: FleetInfo) -> str:
    with server.db.session() as s:
        row = s.get(t.Fleet, fleet.id)
        assert row is not None
        rel = releases.start_release(s, fleet=row, composition=COMPOSE)
        releases.fail_release(s, release=rel, error="build failed")
        commit = rel.commit
    return commit


def test_a_device_pins_itself_and_newer_releases_do_not_move_it(
        server: RunningServer, device: DeviceInfo) -> None:
    r1 = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    r2 = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    assert target_commit(device) == r2
    etag = device.http.get(f"/device/v3/{device.uuid}/state").headers["ETag"]
    r = device.http.patch(f"/device/v3/{device.uuid}", json={"pinned_release": r1})
    assert r.status_code == 200, r.text
    assert r.json() == {"uuid": device.uuid, "pinned_release": r1}
    assert pinned(device) == r1 and target_commit(device) == r1
    changed = device.http.get(f"/device/v3/{device.uuid}/state",
                              headers={"If-None-Match": etag})
    assert changed.status_code == 200, "the pin changes the ETag"
    again = device.http.patch(f"/device/v3/{device.uuid}", json={"pinned_release": r1})
    assert again.status_code == 200, "pinning twice (a retry after a crash) is fine"
    r3 = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    assert target_commit(device) == r1, "the fleet's next release does not move it"
    unpin = device.fleet.tenant.http.patch(f"/api/v1/devices/{device.uuid}",
                                           json={"pinned_release": "latest"})
    assert unpin.status_code == 200 and unpin.json()["pinned_release"] is None
    assert target_commit(device) == r3


def test_only_the_device_itself_may_pin_and_only_to_its_fleets_good_releases(
        server: RunningServer, device: DeviceInfo) -> None:
    r1 = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    other = register(server, device.fleet)  # same fleet, another device
    try:
        url = f"/device/v3/{device.uuid}"
        body = {"pinned_release": r1}
        assert other.http.patch(url, json=body).status_code == 403
        assert device.fleet.tenant.http.patch(url, json=body).status_code == 403, "user token"
        with httpx.Client(base_url=server.url) as anon:
            assert anon.patch(url, json=body).status_code == 401
            prov = anon.patch(url, json=body, headers={
                "Authorization": f"Bearer {device.fleet.provisioning_key}"})
            assert prov.status_code == 403
        foreign_fleet = new_fleet(device.fleet.tenant)
        foreign = make_release(server, fleet_id=foreign_fleet.id, composition=COMPOSE)
        r = device.http.patch(url, json={"pinned_release": foreign})
        assert r.status_code == 404 and "has no release" in r.json()["detail"]
        assert device.http.patch(url, json={"pinned_release": "f" * 32}).status_code == 404
        assert device.http.patch(url, json={"pinned_release": r1[:10]}).status_code == 404, \
            "a device names its release by full commit"
        failed = failed_release(server, device.fleet)
        r = device.http.patch(url, json={"pinned_release": failed})
        assert r.status_code == 409 and "failed" in r.json()["detail"]
        assert device.http.patch(url, json={"pinned_release": r1, "x": 1}).status_code == 422
        assert device.http.patch(url, json={}).status_code == 422
        assert device.http.patch(url, content=b"not json").status_code == 422
        assert pinned(device) is None and pinned(other) is None, "nothing changed"
        assert other.http.patch(f"/device/v3/{other.uuid}", json=body).status_code == 200
        assert pinned(other) == r1 and pinned(device) is None
    finally:
        other.http.close()


def test_cli_pin_unpin_and_latest(server: RunningServer, device: DeviceInfo,
                                  tmp_path: Path) -> None:
    r1 = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    r2 = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    runner = CliRunner()
    env = {"EDGEFLEET_CLIENT_CONFIG": str(tmp_path / "none.json"), "COLUMNS": "200",
           "EDGEFLEET_SERVER": server.url, "EDGEFLEET_TOKEN": device.fleet.tenant.token}

    def cli(*args: str, code: int = 0) -> str:
        r = runner.invoke(app, list(args), env=env)
        assert r.exit_code == code, f"{args}: {r.output}"
        return r.output

    short = device.uuid[:8]
    assert json.loads(cli("device", "pin", short, r1[:8], "--json"))["pinned_release"] == r1
    assert target_commit(device) == r1
    out = cli("device", "pin", short, "--unpin", "--json")
    assert json.loads(out)["pinned_release"] is None and target_commit(device) == r2
    cli("device", "pin", short, r1)
    assert json.loads(cli("device", "pin", short, "latest", "--json"))["pinned_release"] is None
    assert "give a release to pin to, or --unpin" in cli("device", "pin", short, code=1)
    assert "not both" in cli("device", "pin", short, r1, "--unpin", code=1)
    assert pinned(device) is None, "a refused command changes nothing"
