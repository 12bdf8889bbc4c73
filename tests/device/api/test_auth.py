"""Keys (compat §5): none → 401, unknown → 401, global → everywhere, an app key → its own app
only (other apps refused, lists filtered); /ping and /v1/healthy need none; local mode and
unmanaged devices need none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgefleet.device.api.app import create_app
from tests.device.api.conftest import Api, make_ctx
from tests.device.conftest import Device
from tests.support import images

pytestmark = pytest.mark.engine

KEYED = [
    ("POST", "/v1/blink", None), ("POST", "/v1/update", {}), ("POST", "/v1/reboot", {}),
    ("POST", "/v1/shutdown", {}), ("POST", "/v1/purge", {"appId": 77}),
    ("POST", "/v1/restart", {"appId": 77}), ("POST", "/v1/apps/77/stop", {}),
    ("POST", "/v1/apps/77/start", {}), ("GET", "/v1/apps/77", None),
    ("GET", "/v1/device", None), ("GET", "/v1/device/host-config", None),
    ("PATCH", "/v1/device/host-config", {"network": {}}),
    ("POST", "/v1/regenerate-api-key", None),
    ("GET", "/v2/applications/state", None), ("GET", "/v2/applications/77/state", None),
    ("POST", "/v2/applications/77/restart-service", {"serviceName": "main"}),
    ("POST", "/v2/applications/77/stop-service", {"serviceName": "main"}),
    ("POST", "/v2/applications/77/start-service", {"serviceName": "main"}),
    ("POST", "/v2/applications/77/restart", {}), ("POST", "/v2/applications/77/purge", {}),
    ("GET", "/v2/state/status", None), ("GET", "/v2/version", None),
    ("GET", "/v2/containerId", None), ("GET", "/v2/device/name", None),
    ("GET", "/v2/device/tags", None), ("PATCH", "/v2/device/tags", {"tags": []}),
    ("GET", "/v2/device/vpn", None), ("GET", "/v2/cleanup-volumes", None),
    ("POST", "/v2/journal-logs", {}), ("GET", "/v2/local/target-state", None),
    ("POST", "/v2/local/target-state", {"local": {}}), ("GET", "/v2/local/device-info", None),
    ("GET", "/v2/local/logs", None), ("GET", "/v2/diagnostics/checks", None),
    ("GET", "/v2/diagnostics/report", None),
]


def test_every_route_is_in_the_auth_table(api_app_routes: set[tuple[str, str]]) -> None:
    listed = {(m, p.replace("77", "{appId}")) for m, p, _ in KEYED}
    open_routes = {("GET", "/ping"), ("GET", "/v1/healthy")}
    assert api_app_routes - open_routes == listed


@pytest.fixture
def api_app_routes(device: Device, tmp_path: Path) -> set[tuple[str, str]]:
    paths = create_app(ctx=make_ctx(device, tmp_path)).openapi()["paths"]
    return {(m.upper(), p) for p, ops in paths.items() for m in ops}


async def test_without_a_key_every_keyed_endpoint_is_401_and_changes_nothing(api: Api) -> None:
    for method, path, body in KEYED:
        r = await api.client.request(method, path, json=body)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["status"] == "failed" and "API key" in r.json()["message"]
        r = await api.client.request(method, path, json=body, params={"apikey": "nope"})
        assert r.status_code == 401, (method, path)
    assert not (api.tmp / "rebooted").exists() and not api.updates


async def test_ping_and_healthy_need_no_key(api: Api) -> None:
    r = await api.client.get("/ping")
    assert (r.status_code, r.text) == (200, "OK")
    r = await api.client.get("/v1/healthy")
    assert (r.status_code, r.text) == (200, "OK")


@pytest.mark.parametrize("how", ["query", "bearer", "apikey"])
async def test_the_global_key_in_each_form(api: Api, how: str) -> None:
    kw: dict[str, Any] = {"params": {"apikey": api.key}} if how == "query" else {
        "headers": {"Authorization": f"{'Bearer' if how == 'bearer' else 'ApiKey'} {api.key}"}}
    r = await api.client.get("/v2/version", **kw)
    assert r.status_code == 200 and r.json()["status"] == "success"


async def test_an_app_key_reaches_its_own_app_only(api: Api, test_images: dict[str, Any]
                                                  ) -> None:
    await api.running(test_images["sleeper"].ref)
    app_key = api.ctx.keys.app_key(app_uuid=api.dev.app_uuid)
    assert app_key and api.ctx.keys.app_key(app_uuid=api.b_uuid) is None, \
        "only the app with a supervisor-api service gets a key"
    mine = api.auth(app_key)
    r = await api.client.get("/v2/applications/state", headers=mine)
    assert r.status_code == 200 and list(r.json()) == ["appa"]
    r = await api.client.get("/v2/applications/state", headers=api.auth())
    assert sorted(r.json()) == ["appa", "appb"]
    status = (await api.client.get("/v2/state/status", headers=mine)).json()
    assert {c["serviceName"] for c in status["containers"]} == {"main", "side"}
    ids = (await api.client.get("/v2/containerId", headers=mine)).json()["services"]
    assert set(ids) == {"main", "side"}
    assert (await api.client.get("/v2/applications/77/state", headers=mine)).status_code == 200
    for method, path, body in [("GET", "/v2/applications/78/state", None),
                               ("POST", "/v2/applications/78/restart-service",
                                {"serviceName": "other"}),
                               ("POST", "/v1/restart", {"appId": 78}),
                               ("POST", "/v1/purge", {"appId": 78}),
                               ("GET", "/v2/diagnostics/checks", None),
                               ("GET", "/v2/cleanup-volumes", None),
                               ("POST", "/v2/journal-logs", {})]:
        r = await api.client.request(method, path, json=body, headers=mine)
        assert r.status_code == 401, (path, r.text)
    before = (await api.dev.containers())["other"]
    assert (await api.dev.containers())["other"].id == before.id
    r = await api.client.get("/v2/applications/78/state", headers=api.auth())
    assert r.status_code == 200


@pytest.mark.parametrize("api_config", [{"managed": False}, {"managed": True, "localMode": True}],
                         ids=["unmanaged", "local-mode"])
async def test_no_key_needed_when_unmanaged_or_in_local_mode(api: Api) -> None:
    r = await api.client.get("/v2/state/status")
    assert r.status_code == 200 and r.json()["status"] == "success"
    r = await api.client.get("/v1/device")
    assert r.status_code == 200


async def test_regenerating_the_global_key_retires_the_old_one(api: Api) -> None:
    old = api.key
    r = await api.client.post("/v1/regenerate-api-key", headers=api.auth(old))
    assert r.status_code == 200 and r.text != old and len(r.text) == 64
    assert (await api.client.get("/v2/version", headers=api.auth(old))).status_code == 401
    assert (await api.client.get("/v2/version", headers=api.auth(r.text))).status_code == 200
    assert api.dev.store.api_key(app_uuid="") == r.text, "kept in the store"


async def test_regenerating_an_app_key_recreates_its_labelled_service(
        api: Api, test_images: dict[str, Any]) -> None:
    before = await api.running(test_images["sleeper"].ref)
    old = api.ctx.keys.app_key(app_uuid=api.dev.app_uuid)
    assert old
    r = await api.client.post("/v1/regenerate-api-key", headers=api.auth(old))
    assert r.status_code == 200
    new = r.text
    assert (await api.client.get("/v2/version", headers=api.auth(old))).status_code == 401
    assert api.ctx.keys.global_key() != new

    async def recreated() -> bool:
        ctrs = await api.dev.containers()
        return "main" in ctrs and ctrs["main"].id != before["main"].id and \
            ctrs["main"].status == "running"

    from tests.device.api.conftest import wait_for

    await wait_for(recreated, what="main recreated with the new key")
    after = await api.dev.containers()
    assert after["side"].id == before["side"].id and after["other"].id == before["other"].id
    with images.engine_client() as c:
        env = c.get(f"/containers/{after['main'].id}/json").json()["Config"]["Env"]
    assert f"BALENA_SUPERVISOR_API_KEY={new}" in env
