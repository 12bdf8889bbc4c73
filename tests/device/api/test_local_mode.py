"""Local mode (compat §9): v2 local target in, cloud target kept aside, refused on production,
leaving it removes the local app; device info and the NDJSON log stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from edgefleet.device.local_mode import PRODUCTION_REFUSAL, LocalMode, LocalModeRefused
from edgefleet.device.targets import TargetSource
from edgefleet.model.config import DeviceConfig
from edgefleet.model.target import TargetState
from tests.device.api.conftest import Api, wait_for

pytestmark = pytest.mark.engine
LOCAL = {"managed": True, "localMode": True}


def v2_local(image: str, *, greeting: str = "hello") -> dict[str, Any]:
    """What balena CLI posts after building (see balena-cli's generateTargetState)."""
    svc = {"command": ["sh", "-c", f"while true; do echo {greeting}; sleep 1; done"],
           "environment": {}, "labels": {}, "imageId": 1, "serviceName": "web",
           "serviceId": 1, "image": image, "running": True}
    return {"local": {"name": "dev", "config": {}, "apps": {"1": {
        "name": "localapp", "commit": "10ca12e1ea5e", "releaseId": "1",
        "services": {"1": svc}, "volumes": {}, "networks": {}}}}}


@pytest.mark.parametrize("api_config", [LOCAL])
async def test_local_target_state_round_trip_and_logs(api: Api, test_images: dict[str, Any]
                                                      ) -> None:
    r = await api.client.get("/v2/local/target-state")
    assert r.status_code == 200
    state = r.json()["state"]
    assert state["local"]["apps"] == {}
    logs = await api.client.send(api.client.build_request("GET", "/v2/local/logs"),
                                 stream=True)
    lines = logs.aiter_lines()
    first = json.loads(await anext(lines))
    assert first == {"message": "Streaming logs", "isSystem": True}
    r = await api.client.post("/v2/local/target-state", json=v2_local(
        test_images["sleeper"].ref))
    assert r.json() == {"status": "success", "message": "OK"}

    async def said_hello() -> bool:
        line = json.loads(await asyncio.wait_for(anext(lines), 30))
        return line.get("serviceName") == "web" and line["message"] == "hello"

    await wait_for(said_hello, what="a service line in /v2/local/logs")
    await logs.aclose()
    got = (await api.client.get("/v2/local/target-state")).json()["state"]
    app = got["local"]["apps"]["1"]
    assert app["name"] == "localapp" and app["services"]["1"]["serviceName"] == "web"
    st = (await api.client.get("/v2/state/status")).json()
    assert st["containers"][0]["serviceName"] == "web"
    info = (await api.client.get("/v2/local/device-info")).json()
    assert info == {"status": "success", "info": {"arch": "amd64",
                                                  "deviceType": "generic-amd64"}}


@pytest.mark.parametrize("api_config", [LOCAL])
async def test_bad_local_target_is_refused_and_changes_nothing(
        api: Api, test_images: dict[str, Any]) -> None:
    await api.client.post("/v2/local/target-state", json=v2_local(test_images["sleeper"].ref))
    before = api.dev.store.load_target()
    bad = v2_local(test_images["sleeper"].ref)
    bad["local"]["apps"]["1"]["services"]["1"]["ports"] = ["notaport"]
    for body in (bad, {"nope": 1}, {"local": {"apps": {"x": {}}}}):
        r = await api.client.post("/v2/local/target-state", json=body)
        assert r.status_code == 400 and r.json()["status"] == "failed", body
    assert api.dev.store.load_target() == before
    assert "ports" in (await api.client.post("/v2/local/target-state", json=bad)
                         ).json()["message"]


async def test_not_in_local_mode_the_local_endpoints_refuse(api: Api) -> None:
    for method in ("GET", "POST"):
        r = await api.client.request(method, "/v2/local/target-state", headers=api.auth(),
                                     json={"local": {}})
        assert r.status_code == 400 and "local mode" in r.json()["message"]
    r = await api.client.post("/v1/update", headers=api.auth())
    assert r.status_code == 204


@pytest.mark.parametrize("api_config", [{"managed": True, "localMode": True,
                                         "developmentMode": False}])
async def test_local_mode_is_refused_on_a_production_device(api: Api) -> None:
    assert not api.ctx.local.enabled
    r = await api.client.get("/v2/local/target-state", headers=api.auth())
    assert r.status_code == 400 and "production" in r.json()["message"]
    assert (await api.client.get("/v2/local/target-state")).status_code == 401
    with pytest.raises(LocalModeRefused):
        api.ctx.local.set(enabled=True, source="test")
    assert any(PRODUCTION_REFUSAL in m for m in api.dev.log_messages())


@pytest.mark.parametrize("api_config", [LOCAL])
async def test_cloud_target_waits_and_leaving_local_mode_removes_the_local_app(
        api: Api, test_images: dict[str, Any]) -> None:
    sup = api.dev.supervisor
    await api.client.post("/v2/local/target-state", json=v2_local(test_images["sleeper"].ref))
    cloud = api.two_apps(test_images["sleeper"].ref)
    sup.set_target(target=cloud, source=TargetSource.CLOUD)  # ignored while in local mode
    assert set(sup.desired.apps) == {"1"}
    assert (await api.client.post("/v1/update")).status_code == 202
    await wait_for(lambda: _services(api, {"web"}), what="local app running")
    leave = TargetState.model_validate({"device_uuid": cloud.device_uuid, "device": {
        **cloud.device.model_dump(by_alias=True),
        "config": {"SUPERVISOR_LOCAL_MODE": "0"}}})
    sup.set_target(target=leave, source=TargetSource.CLOUD)
    assert not api.ctx.local.enabled
    await wait_for(lambda: _services(api, {"main", "side", "other"}),
                   what="cloud apps running, local app gone")


async def _services(api: Api, names: set[str]) -> bool:
    ctrs = await api.dev.containers()
    return set(ctrs) == names and all(c.status == "running" for c in ctrs.values())


async def test_leaving_local_mode_while_stopped_restores_the_kept_target(api: Api) -> None:
    sup = api.dev.supervisor
    local = LocalMode(supervisor=sup, config=DeviceConfig.model_validate({"localMode": True}))
    assert local.enabled
    sup.store.save_target(source="local", document={sup.device.uuid: {"apps": {}}})
    # restarted without local mode: the local target is dropped
    LocalMode(supervisor=sup, config=DeviceConfig.model_validate({}))
    stored = sup.store.load_target()
    assert stored is not None and stored.source == "local-exit"


@pytest.mark.parametrize("api_config", [LOCAL])
async def test_unsupported_feature_labels_are_refused_by_name(
        api: Api, test_images: dict[str, Any]) -> None:
    for feature, ok in (("gpu", False), ("balena-api", True), ("procfs", True)):
        body = v2_local(test_images["sleeper"].ref)
        body["local"]["apps"]["1"]["services"]["1"]["labels"] = {
            f"io.balena.features.{feature}": "1"}
        r = await api.client.post("/v2/local/target-state", json=body)
        if ok:
            assert r.status_code == 200, r.text
        else:
            assert r.status_code == 400
            assert f"feature '{feature}' is not supported on this host" in r.json()["message"]
