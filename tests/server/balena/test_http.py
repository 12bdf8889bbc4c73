"""The balena API over HTTP on a real server (SQLite and PostgreSQL): whoami, writes,
pinejs-client's upsert, computed status, provisioning, and OData's error shape (never 500)."""

from __future__ import annotations

import uuid

import httpx

from tests.server.conftest import DeviceInfo, FleetInfo, Tenant, new_tenant
from tests.support.fleet_server import RunningServer


def test_whoami(server: RunningServer, tenant: Tenant) -> None:
    r = tenant.http.get("/actor/v1/whoami")
    assert r.status_code == 200
    me = r.json()
    assert me["actorType"] == "user" and me["username"] == tenant.username
    assert me["actorTypeId"] == me["id"] and "email" in me
    assert httpx.get(f"{server.url}/actor/v1/whoami").status_code == 401


def test_fleet_lifecycle(server: RunningServer, tenant: Tenant) -> None:
    http = tenant.http
    [org] = http.get("/v7/organization", params={"$select": "id,handle"}).json()["d"]
    assert org["handle"] == tenant.username
    [dt] = http.get("/v7/device_type", params={
        "$select": "id", "$filter": "device_type_alias/any(dta:dta/is_referenced_by__alias "
                                    "eq 'generic-amd64')"}).json()["d"]
    r = http.post("/v7/application", json={"app_name": "cli-fleet", "organization": org["id"],
                                           "is_for__device_type": dt["id"]})
    assert r.status_code == 201, r.text
    app = r.json()
    assert app["slug"] == f"{tenant.username}/cli-fleet"
    assert app["is_for__device_type"] == {"__id": dt["id"]}
    assert http.post("/v7/application", json={
        "app_name": "cli-fleet", "organization": org["id"],
        "is_for__device_type": dt["id"]}).status_code == 409
    r = http.patch(f"/v7/application({app['id']})", json={"app_name": "renamed"})
    assert r.status_code == 200, r.text
    assert http.get("/api/v1/fleets/renamed").status_code == 200  # the same fleet row
    assert http.patch(f"/v7/application({app['id']})", json={"is_public": True}
                      ).status_code == 400
    r = http.delete("/v7/application", params={"$filter": f"id in ({app['id']})"})
    assert r.status_code == 200
    assert http.get("/api/v1/fleets/renamed").status_code == 404


def test_variable_upsert_as_pinejs_client_does(tenant: Tenant, fleet: FleetInfo) -> None:
    http = tenant.http
    body = {"application": fleet.id, "name": "GREETING", "value": "hi"}
    assert http.post("/v7/application_environment_variable", json=body).status_code == 201
    again = http.post("/v7/application_environment_variable", json={**body, "value": "yo"})
    assert again.status_code == 409 and "unique" in again.text.lower()
    r = http.patch("/v7/application_environment_variable", json={"value": "yo"}, params={
        "$filter": f"application eq {fleet.id} and name eq 'GREETING'"})
    assert r.status_code == 200
    got = http.get("/api/v1/variables", params={"fleet": fleet.name}).json()
    assert [(v["name"], v["value"], v["level"]) for v in got] == [("GREETING", "yo", "fleet")]


def test_other_users_rows_cannot_be_touched(server: RunningServer, tenant: Tenant,
                                            fleet: FleetInfo) -> None:
    other = new_tenant(server)
    try:
        assert other.http.get(f"/v7/application({fleet.id})").json() == {"d": []}
        assert other.http.delete(f"/v7/application({fleet.id})").status_code == 200
        assert other.http.patch(f"/v7/application({fleet.id})",
                                json={"app_name": "mine"}).status_code == 200
        assert other.http.post("/v7/application_environment_variable", json={
            "application": fleet.id, "name": "X", "value": "1"}).status_code == 404
        assert other.http.post("/api-key/v2/", json={
            "actorType": "application", "actorTypeId": fleet.id,
            "roles": ["provisioning-api-key"]}).status_code == 404
    finally:
        other.http.close()
    assert tenant.http.get(f"/api/v1/fleets/{fleet.name}").status_code == 200


def test_device_computed_fields(tenant: Tenant, device: DeviceInfo) -> None:
    def status() -> dict[str, object]:
        [d] = tenant.http.get(f"/v7/device(uuid='{device.uuid}')", params={
            "$select": "is_online,status,overall_status,device_name"}).json()["d"]
        return dict(d)

    assert status() == {"is_online": False, "status": "Offline",
                        "overall_status": "configuring", "device_name": device.uuid[:7]}
    assert device.http.get(f"/device/v3/{device.uuid}/state").status_code == 200
    # it polls but holds no tunnel (this test device is plain HTTP): Heartbeat Only, which
    # balena calls reduced functionality; tests/e2e/test_balena_cli_cloud.py sees Online
    assert status()["is_online"] is True and status()["status"] == "Heartbeat Only"
    assert status()["overall_status"] == "reduced-functionality"


def test_provisioning_key_registers_a_device(server: RunningServer, tenant: Tenant,
                                             fleet: FleetInfo) -> None:
    r = tenant.http.post("/api-key/v2/", json={"actorType": "application",
                                               "actorTypeId": fleet.id,
                                               "roles": ["provisioning-api-key"]})
    assert r.status_code == 200
    key = r.json()
    reg = httpx.post(f"{server.url}/device/register", headers={"Authorization": f"Bearer {key}"},
                     json={"application": fleet.id, "uuid": uuid.uuid4().hex,
                           "device_type": "generic-amd64", "user": 1})
    assert reg.status_code == 201, reg.text


def test_outside_the_subset_is_an_odata_error_not_a_500(tenant: Tenant) -> None:
    for path, params in [("/v7/device", {"$filter": "id add 1 eq 2"}),
                         ("/v7/device", {"$filter": "nope eq 1"}),
                         ("/v7/device", {"$apply": "groupby((a))"}),
                         ("/v7/device", {"$filter": "is_online eq true"}),
                         ("/v7/device", {"$expand": "owns__cat"}),
                         ("/v7/user_secret", {}),
                         ("/v7/device(uuid='a'", {}),
                         ("/v7/device", {"$filter": "(" * 40 + "id eq 1" + ")" * 40})]:
        r = tenant.http.get(path, params=params)
        assert 400 <= r.status_code < 500, (path, params, r.text)
        err = r.json()["error"]
        assert err["code"] and err["message"], r.text
    long_and = tenant.http.get("/v7/device", params={"$filter": " and ".join(["id eq 1"] * 3000)})
    assert long_and.status_code in (200, 400), long_and.text
    r = tenant.http.post("/v7/device_type", json={"slug": "x"})
    assert r.status_code == 405 and r.json()["error"]["code"] == "MethodNotAllowed"
    assert tenant.http.post("/v7/application", content=b"{").status_code == 400


def test_bad_values_are_refused_with_what_to_fix(tenant: Tenant, fleet: FleetInfo) -> None:
    http = tenant.http
    other = http.post("/api/v1/fleets", json={"name": "taken", "device_type": "generic-amd64"})
    assert other.status_code == 201
    r = http.patch(f"/v7/application({fleet.id})", json={"app_name": "taken"})
    assert r.status_code == 409 and "unique" in r.text.lower(), r.text
    r = http.patch(f"/v7/application({fleet.id})", json={"app_name": "no spaces"})
    assert r.status_code == 400 and "not a fleet name" in r.json()["message"]
    r = http.post("/v7/application_environment_variable", json={
        "application": fleet.id, "name": "1BAD", "value": "x"})
    assert r.status_code == 400 and "not a variable name" in r.json()["message"]
    r = http.post("/v7/application_environment_variable", json={
        "application": fleet.id, "name": "OK", "value": 5})
    assert r.status_code == 400 and "value" in r.json()["message"]
    assert http.get(f"/api/v1/fleets/{fleet.name}").status_code == 200  # nothing changed


def test_deploy_records_a_release_as_balena_deploy_does(tenant: Tenant, fleet: FleetInfo
                                                        ) -> None:
    """The sequence `balena deploy` sends after building and before/after pushing."""
    http = tenant.http
    commit = uuid.uuid4().hex
    composition = {"services": {"main": {"build": {"context": "main"}, "command": None,
                                         "environment": {"A": "1"}}}}
    r = http.post("/v7/release", json={"belongs_to__application": fleet.id, "commit": commit,
                                       "composition": composition, "status": "running",
                                       "source": "local", "is_final": True})
    assert r.status_code == 201, r.text
    release = r.json()
    assert release["status"] == "running" and release["commit"] == commit
    assert http.get(f"/v7/service(application={fleet.id},service_name='main')"
                    ).json() == {"d": []}
    svc = http.post("/v7/service", json={"application": fleet.id, "service_name": "main"})
    assert svc.status_code == 201, svc.text
    img = http.post("/v7/image", json={"is_a_build_of__service": svc.json()["id"],
                                       "status": "running"}).json()
    location = img["is_stored_at__image_location"]
    assert location.endswith(f"/{fleet.uuid}/main:{commit}")
    link = http.post("/v7/image__is_part_of__release", json={
        "is_part_of__release": release["id"], "image": img["id"]})
    assert link.status_code == 201, link.text
    assert http.post("/v7/image_label", json={"release_image": link.json()["id"],
                                              "label_name": "x", "value": "y"}
                     ).status_code == 201
    early = http.patch(f"/v7/release({release['id']})", json={"status": "success"})
    assert early.status_code == 409 and "not pushed" in early.json()["message"]
    digest = "sha256:" + "a" * 64
    assert http.patch(f"/v7/image({img['id']})", json={
        "status": "success", "content_hash": digest, "image_size": "1234"}).status_code == 200
    assert http.patch(f"/v7/release({release['id']})", json={"status": "success"}
                      ).status_code == 200
    [out] = http.get(f"/api/v1/fleets/{fleet.name}/releases").json()
    assert out["status"] == "success" and out["commit"] == commit
    assert out["images"][0]["ref"] == location.rsplit(":", 1)[0] + "@" + digest
    bad = http.post("/v7/release", json={
        "belongs_to__application": fleet.id, "commit": uuid.uuid4().hex,
        "composition": {"services": {"main": {"image": "x", "privileged": "maybe"}}}})
    assert bad.status_code == 400 and "composition" in bad.json()["message"], bad.text
