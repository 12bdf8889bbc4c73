"""The device-facing API (compat §2-4) over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from edgefleet.model.formats import parse_v3
from edgefleet.server import tables as t
from tests.server.conftest import HEARTBEAT_TIMEOUT_S, OFFLINE_GRACE_S, DeviceInfo, FleetInfo
from tests.server.conftest import register as register_device
from tests.server.helpers import make_release
from tests.support.fleet_server import RunningServer, run_server

COMPOSE = {"services": {"web": {"environment": {"FROM_COMPOSE": "1"}, "restart": "always"},
                        "worker": {"command": ["sh", "-c", "sleep 1000"]}},
           "volumes": {"data": {}}}


def reg_body(fleet: FleetInfo, **over: object) -> dict[str, object]:
    body: dict[str, object] = {"application": fleet.id, "device_type": "generic-amd64",
                               "uuid": uuid.uuid4().hex, "supervisor_version": "0.1.0",
                               "os_version": "x", "os_variant": "dev", "mac_address": "m"}
    body.update(over)
    return body


def test_register_makes_a_device_whose_key_reads_state(server: RunningServer,
                                                       fleet: FleetInfo) -> None:
    body = reg_body(fleet)
    r = httpx.post(f"{server.url}/device/register", json=body,
                   headers={"Authorization": f"Bearer {fleet.provisioning_key}"})
    assert r.status_code == 201
    reply = r.json()
    assert reply["uuid"] == body["uuid"] and len(reply["api_key"]) >= 32  # server-made key
    s = httpx.get(f"{server.url}/device/v3/{body['uuid']}/state",
                  headers={"Authorization": f"Bearer {reply['api_key']}"})
    assert s.status_code == 200
    doc = s.json()
    assert list(doc) == [body["uuid"]]
    assert doc[body["uuid"]]["apps"][fleet.uuid]["releases"] == {}
    listed = fleet.tenant.http.get("/api/v1/devices", params={"fleet": fleet.name}).json()
    assert [d["uuid"] for d in listed] == [body["uuid"]]


def test_register_errors(server: RunningServer, fleet: FleetInfo, device: DeviceInfo) -> None:
    url = f"{server.url}/device/register"
    auth = {"Authorization": f"Bearer {fleet.provisioning_key}"}
    assert httpx.post(url, json=reg_body(fleet)).status_code == 401
    assert httpx.post(url, json=reg_body(fleet),
                      headers={"Authorization": "Bearer nope-nope-nope"}).status_code == 401
    # duplicate uuid
    dup = httpx.post(url, json=reg_body(fleet, uuid=device.uuid), headers=auth)
    assert dup.status_code == 409
    # a device key or a user token cannot register
    assert httpx.post(url, json=reg_body(fleet), headers={
        "Authorization": f"Bearer {device.api_key}"}).status_code == 403
    assert httpx.post(url, json=reg_body(fleet), headers={
        "Authorization": f"Bearer {fleet.tenant.token}"}).status_code == 403
    # the provisioning key registers only into its own fleet
    other = fleet.tenant.http.post("/api/v1/fleets", json={
        "name": f"o-{uuid.uuid4().hex[:6]}", "device_type": "generic-amd64"}).json()
    assert httpx.post(url, json=reg_body(fleet, application=other["id"]),
                      headers=auth).status_code == 403
    # bad bodies change nothing
    assert httpx.post(url, json=reg_body(fleet, uuid="NOT A UUID"), headers=auth
                      ).status_code == 422
    assert httpx.post(url, json=reg_body(fleet, device_type="raspberrypi3"), headers=auth
                      ).status_code == 400
    listed = fleet.tenant.http.get("/api/v1/devices", params={"fleet": fleet.name}).json()
    assert [d["uuid"] for d in listed] == [device.uuid]


def test_state_etag_and_304(server: RunningServer, device: DeviceInfo) -> None:
    path = f"/device/v3/{device.uuid}/state"
    first = device.http.get(path)
    assert first.status_code == 200 and first.headers["etag"]
    same = device.http.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert same.status_code == 304 and same.content == b""
    commit = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    changed = device.http.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and changed.headers["etag"] != first.headers["etag"]
    parse_v3(data=changed.json(), device_uuid=device.uuid)  # the device's own validation
    app = changed.json()[device.uuid]["apps"][device.fleet.uuid]
    assert app["id"] == device.fleet.id and app["class"] == "fleet"
    release = app["releases"][commit]
    assert set(release["services"]) == {"web", "worker"}
    web = release["services"]["web"]
    assert web["image"] == "127.0.0.1:5055/test/web:latest"
    assert web["composition"]["environment"] == {"FROM_COMPOSE": "1"}
    assert "build" not in web["composition"] and web["id"] > 0 and web["image_id"] > 0
    assert release["volumes"] == {"data": {"driver_opts": {}, "labels": {}}} or "data" in \
        release["volumes"]


def test_env_precedence_and_config(server: RunningServer, device: DeviceInfo) -> None:
    http = device.fleet.tenant.http
    fleet = device.fleet.name
    commit = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    sets = [
        {"fleet": fleet, "name": "A", "value": "fleet"},
        {"fleet": fleet, "name": "B", "value": "fleet"},
        {"fleet": fleet, "name": "C", "value": "fleet"},
        {"fleet": fleet, "name": "D", "value": "fleet"},
        {"fleet": fleet, "service": "web", "name": "B", "value": "fleet+service"},
        {"fleet": fleet, "service": "web", "name": "C", "value": "fleet+service"},
        {"device": device.uuid, "name": "C", "value": "device"},
        {"device": device.uuid, "name": "D", "value": "device"},
        {"device": device.uuid, "service": "web", "name": "D", "value": "device+service"},
        {"kind": "config", "fleet": fleet, "name": "BALENA_SUPERVISOR_POLL_INTERVAL",
         "value": "60000"},
        {"kind": "config", "fleet": fleet, "name": "X", "value": "fleet"},
        {"kind": "config", "device": device.uuid, "name": "X", "value": "device"},
    ]
    for body in sets:
        r = http.put("/api/v1/variables", json=body)
        assert r.status_code == 200, r.text
    doc = device.http.get(f"/device/v3/{device.uuid}/state").json()[device.uuid]
    services = doc["apps"][device.fleet.uuid]["releases"][commit]["services"]
    assert services["web"]["environment"] == {"A": "fleet", "B": "fleet+service",
                                              "C": "device", "D": "device+service"}
    assert services["worker"]["environment"] == {"A": "fleet", "B": "fleet", "C": "device",
                                                 "D": "device"}
    assert doc["config"] == {"BALENA_SUPERVISOR_POLL_INTERVAL": "60000", "X": "device"}


def test_pins_device_over_fleet(server: RunningServer, device: DeviceInfo) -> None:
    http = device.fleet.tenant.http
    r1 = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    r2 = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)

    def target() -> str:
        doc = device.http.get(f"/device/v3/{device.uuid}/state").json()
        return next(iter(doc[device.uuid]["apps"][device.fleet.uuid]["releases"]))

    assert target() == r2  # latest
    assert http.patch(f"/api/v1/fleets/{device.fleet.name}",
                      json={"target_release": r1}).status_code == 200
    assert target() == r1  # fleet pinned
    assert http.patch(f"/api/v1/fleets/{device.fleet.name}",
                      json={"target_release": "latest"}).status_code == 200
    assert http.patch(f"/api/v1/devices/{device.uuid}",
                      json={"pinned_release": r1[:10]}).status_code == 200
    assert target() == r1  # device pin overrides the fleet
    r3 = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    assert target() == r1
    assert http.patch(f"/api/v1/devices/{device.uuid}",
                      json={"pinned_release": "none"}).status_code == 200
    assert target() == r3


def test_report_stores_status_and_release(server: RunningServer, device: DeviceInfo) -> None:
    commit = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    report = {device.uuid: {
        "status": "Idle", "os_version": "Debian 12", "supervisor_version": "0.1.0",
        "ip_address": "10.0.0.2", "cpu_usage": 12, "memory_usage": 100, "api_port": 48484,
        "apps": {device.fleet.uuid: {"releases": {commit: {
            "update_status": "done",
            "services": {"web": {"image": "x", "status": "Running"}}}}}}}}
    r = device.http.patch("/device/v3/state", json=report)
    assert r.status_code == 200, r.text
    # a diff: only memory changed
    assert device.http.patch("/device/v3/state", json={
        device.uuid: {"memory_usage": 200}}).status_code == 200
    shown = device.fleet.tenant.http.get(f"/api/v1/devices/{device.uuid}").json()
    assert shown["reported_status"] == "Idle" and shown["ip_address"] == "10.0.0.2"
    assert shown["reported"]["memory_usage"] == 200 and shown["reported"]["cpu_usage"] == 12
    assert shown["running_release"] == commit and shown["update_status"] == "done"
    assert shown["releases"][0]["services"]["web"]["status"] == "Running"


def test_report_errors(server: RunningServer, device: DeviceInfo) -> None:
    other = register_device(server, device.fleet)
    r = device.http.patch("/device/v3/state", json={other.uuid: {"status": "Idle"}})
    assert r.status_code == 403
    assert device.http.patch("/device/v3/state", content=b"{nope").status_code == 400
    assert device.http.patch("/device/v3/state", json=[1]).status_code == 400
    assert device.http.patch("/device/v3/state", json={device.uuid: {
        "cpu_usage": "lots"}}).status_code == 400
    assert device.http.patch("/device/v3/state", json={device.uuid: {"apps": {"a": {
        "releases": {"c": {"update_status": "sleeping"}}}}}}).status_code == 400
    prov = httpx.patch(f"{server.url}/device/v3/state", json={device.uuid: {"status": "x"}},
                       headers={"Authorization": f"Bearer {device.fleet.provisioning_key}"})
    assert prov.status_code == 403
    assert httpx.patch(f"{server.url}/device/v3/state",
                       json={device.uuid: {}}).status_code == 401
    shown = device.fleet.tenant.http.get(f"/api/v1/devices/{other.uuid}").json()
    assert shown["reported_status"] == ""


def test_device_keys_are_confined(server: RunningServer, device: DeviceInfo) -> None:
    other = register_device(server, device.fleet)
    assert device.http.get(f"/device/v3/{other.uuid}/state").status_code == 403
    assert device.http.get(f"/device/v3/{uuid.uuid4().hex}/state").status_code == 403
    assert device.http.get(f"/device/v2/{other.uuid}/logs").status_code == 403
    assert device.http.post(f"/device/v2/{other.uuid}/log-stream",
                            content=b'{"message":"x"}\n').status_code == 403
    # a provisioning key cannot read state; no key at all is 401
    prov = httpx.get(f"{server.url}/device/v3/{device.uuid}/state",
                     headers={"Authorization": f"Bearer {device.fleet.provisioning_key}"})
    assert prov.status_code == 403
    assert httpx.get(f"{server.url}/device/v3/{device.uuid}/state").status_code == 401
    # a device key is no user token
    assert device.http.get("/api/v1/fleets").status_code == 403
    # a removed device's key stops working at once
    assert device.fleet.tenant.http.delete(f"/api/v1/devices/{other.uuid}").status_code == 204
    assert other.http.get(f"/device/v3/{other.uuid}/state").status_code == 401


def test_heartbeat_status(server: RunningServer, device: DeviceInfo) -> None:
    http = device.fleet.tenant.http

    def status() -> str:
        return str(http.get(f"/api/v1/devices/{device.uuid}").json()["status"])

    assert status() == "Offline"  # never seen
    device.http.get(f"/device/v3/{device.uuid}/state")
    shown = http.get(f"/api/v1/devices/{device.uuid}").json()
    # polls without a tunnel: "Heartbeat Only" (the server runs a tunnel hub)
    assert shown["status"] == "Heartbeat Only" and shown["heartbeat"] == "online"
    assert shown["last_seen_ms"] is not None
    deadline = time.monotonic() + 10
    seen_timeout = False
    while status() != "Offline":
        seen_timeout |= http.get(f"/api/v1/devices/{device.uuid}").json()["heartbeat"] \
            == "timeout"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert seen_timeout
    waited = time.monotonic() - (deadline - 10)
    assert waited >= HEARTBEAT_TIMEOUT_S + OFFLINE_GRACE_S - 0.5
    device.http.get(f"/device/v3/{device.uuid}/state")
    assert status() == "Heartbeat Only"


def test_log_stream_and_read(server: RunningServer, device: DeviceInfo) -> None:
    commit = make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    assert commit
    web_id = device.http.get(f"/device/v3/{device.uuid}/state").json()[device.uuid]["apps"][
        device.fleet.uuid]["releases"][commit]["services"]["web"]["id"]
    lines = [{"message": f"line {i}", "timestamp": 1700000000000 + i, "isSystem": False,
              "isStdErr": i % 2 == 1, "serviceId": web_id} for i in range(5)]
    body = b"".join(json.dumps(x).encode() + b"\n" for x in lines) + b"not json\n" + \
        json.dumps({"message": "sys", "isSystem": True}).encode()
    r = device.http.post(f"/device/v2/{device.uuid}/log-stream", content=body,
                         headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 201
    assert r.json() == {"accepted": 6, "invalid": 1, "dropped": 0}
    got = device.fleet.tenant.http.get(f"/device/v2/{device.uuid}/logs",
                                       params={"count": 10}).json()
    assert [x["message"] for x in got] == [f"line {i}" for i in range(5)] + ["sys"]
    assert got[1]["isStdErr"] and got[0]["serviceName"] == "web"
    only_web = device.fleet.tenant.http.get(f"/device/v2/{device.uuid}/logs",
                                            params={"service": "web"}).json()
    assert len(only_web) == 5
    assert device.fleet.tenant.http.get(f"/device/v2/{device.uuid}/logs",
                                        params={"service": "nope"}).status_code == 404
    last2 = device.http.get(f"/device/v2/{device.uuid}/logs", params={"count": 2}).json()
    assert [x["message"] for x in last2] == ["line 4", "sys"]


def test_log_follow(server: RunningServer, device: DeviceInfo) -> None:
    import threading

    got: list[str] = []
    connected = threading.Event()

    def reader() -> None:
        with device.fleet.tenant.http.stream(
                "GET", f"/device/v2/{device.uuid}/logs",
                params={"stream": 1, "count": 0}) as r:
            connected.set()
            for line in r.iter_lines():
                if line:
                    got.append(json.loads(line)["message"])
                if len(got) >= 3:
                    return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert connected.wait(10)

    def gen() -> object:
        for i in range(3):
            yield json.dumps({"message": f"live {i}"}).encode() + b"\n"
            time.sleep(0.1)

    r = device.http.post(f"/device/v2/{device.uuid}/log-stream", content=gen())
    assert r.status_code == 201
    t.join(timeout=10)
    assert got == ["live 0", "live 1", "live 2"]


def test_log_rate_limit_says_what_was_dropped(server: RunningServer,
                                              device: DeviceInfo) -> None:
    # the test server allows 50 lines/s with a 10 s bucket = 500 lines at once (a few more
    # as the bucket refills while the upload is read)
    body = b"".join(json.dumps({"message": f"m{i}"}).encode() + b"\n" for i in range(700))
    r = device.http.post(f"/device/v2/{device.uuid}/log-stream", content=body)
    counts = r.json()
    assert counts["accepted"] + counts["dropped"] == 700
    assert 500 <= counts["accepted"] < 600
    time.sleep(0.1)
    device.http.post(f"/device/v2/{device.uuid}/log-stream",
                     content=b'{"message":"after"}\n')
    got = [x["message"] for x in device.http.get(f"/device/v2/{device.uuid}/logs",
                                                   params={"count": 1000}).json()]
    said = [int(m.split()[1]) for m in got if m.startswith("Suppressed ")]
    assert said and sum(said) == counts["dropped"]
    assert all(m.endswith("message(s) due to rate limiting") for m in got
               if m.startswith("Suppressed "))


def test_log_retention_keeps_the_newest_lines(tmp_path: Path) -> None:
    from tests.server.conftest import new_fleet, new_tenant

    with run_server(data_dir=tmp_path, log_retention_lines=50) as srv:
        dev = register_device(srv, new_fleet(new_tenant(srv)))
        for batch in range(3):
            body = b"".join(json.dumps({"message": f"m{batch * 100 + i}"}).encode() + b"\n"
                            for i in range(100))
            assert dev.http.post(f"/device/v2/{dev.uuid}/log-stream", content=body
                                 ).status_code == 201
        with srv.db.session() as s:
            stored = s.execute(sa.select(sa.func.count()).select_from(t.DeviceLog)).scalar()
        assert stored is not None and stored <= 50 + 100  # trimmed every 100 lines written
        got = [x["message"] for x in dev.http.get(f"/device/v2/{dev.uuid}/logs",
                                                   params={"count": 1000}).json()]
        assert got[-1] == "m299" and "m0" not in got


def test_shared_render_gives_the_same_bytes(server: RunningServer, device: DeviceInfo) -> None:
    """A device without variables of its own is rendered from the fleet's shared parts; the
    bytes (and so the ETag) must equal a full render of its document."""
    from edgefleet.server.target import (
        device_document,
        device_row,
        fleet_view,
        render,
        render_device,
    )

    make_release(server, fleet_id=device.fleet.id, composition=COMPOSE)
    device.fleet.tenant.http.put("/api/v1/variables", json={
        "fleet": device.fleet.name, "service": "web", "name": "A", "value": "é \"q\""})
    served = device.http.get(f"/device/v3/{device.uuid}/state")
    with server.db.session() as s:
        view = fleet_view(s, fleet_id=device.fleet.id)
        row = device_row(s, device_id=device.id)
        assert view is not None and row is not None and device.id not in view.with_vars
        fast = render_device(s, device=row, view=view, generation=0)
        full = render(document=device_document(s, device=row, view=view), generation=0)
    assert fast.body == full.body == served.content
    assert served.headers["etag"] == full.etag
