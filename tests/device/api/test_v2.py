"""v2 endpoints on the real engine: success and error codes."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest

from edgefleet.device.targets import TargetSource
from tests.device.api.conftest import Api
from tests.device.api.test_v1 import hold_lock, inspect
from tests.support import images

pytestmark = pytest.mark.engine


async def test_states_status_and_container_ids(api: Api, test_images: dict[str, Any]) -> None:
    ctrs = await api.running(test_images["sleeper"].ref)
    h = api.auth()
    apps = (await api.client.get("/v2/applications/state", headers=h)).json()
    assert apps["appa"]["appId"] == 77 and apps["appa"]["commit"] == "c1"
    assert apps["appa"]["services"]["main"] == {"status": "Running", "releaseId": 1,
                                               "downloadProgress": None}
    one = (await api.client.get("/v2/applications/78/state", headers=h)).json()
    assert one["commit"] == "c1"
    assert one["local"]["78"]["services"]["10"]["status"] == "Running"
    assert (await api.client.get("/v2/applications/5/state", headers=h)).status_code == 404
    st = (await api.client.get("/v2/state/status", headers=h)).json()
    assert st["status"] == "success" and st["appState"] == "applied" and st["release"] == "c1"
    assert {c["serviceName"]: c["containerId"] for c in st["containers"]} == {
        n: c.id for n, c in ctrs.items()}
    assert {i["status"] for i in st["images"]} == {"Downloaded"}
    r = await api.client.get("/v2/containerId", params={"serviceName": "side"}, headers=h)
    assert r.json() == {"status": "success", "containerId": ctrs["side"].id}
    r = await api.client.get("/v2/containerId", params={"serviceName": "nope"}, headers=h)
    assert r.status_code == 404 and r.json()["status"] == "failed"
    r = await api.client.get("/v2/version", headers=h)
    assert r.json()["version"].startswith("17.0.0+edgefleet.")
    r = await api.client.get("/v2/device/name", headers=h)
    assert r.json() == {"status": "success", "deviceName": "apidevice"}
    r = await api.client.get("/v2/device/vpn", headers=h)
    assert r.json()["vpn"] == {"enabled": False, "connected": False}


async def test_restart_service_restarts_the_same_container(
        api: Api, test_images: dict[str, Any]) -> None:
    before = await api.running(test_images["sleeper"].ref)
    started = inspect(before["side"].id)["State"]["StartedAt"]
    r = await api.client.post("/v2/applications/77/restart-service", headers=api.auth(),
                              json={"serviceName": "side"})
    assert (r.status_code, r.text) == (200, "OK")
    after = await api.dev.containers()
    assert after["side"].id == before["side"].id, "not recreated"
    assert inspect(after["side"].id)["State"]["StartedAt"] != started
    assert after["main"].id == before["main"].id
    # by image id too
    image_id = api.dev.supervisor.desired.apps[api.dev.app_uuid].services["main"].image_id
    r = await api.client.post("/v2/applications/77/restart-service", headers=api.auth(),
                              json={"imageId": image_id})
    assert r.status_code == 200


async def test_stop_and_start_service(api: Api, test_images: dict[str, Any]) -> None:
    before = await api.running(test_images["sleeper"].ref)
    r = await api.client.post("/v2/applications/77/stop-service", headers=api.auth(),
                              json={"serviceName": "side"})
    assert r.status_code == 200
    api.dev.supervisor.wake()
    await asyncio.sleep(1.5)
    ctrs = await api.dev.containers()
    assert ctrs["side"].status == "exited" and ctrs["side"].id == before["side"].id, \
        "stopped, not removed, and the loop leaves it stopped"
    r = await api.client.post("/v2/applications/77/start-service", headers=api.auth(),
                              json={"serviceName": "side"})
    assert r.status_code == 200
    assert (await api.dev.containers())["side"].status == "running"


async def test_service_action_errors_change_nothing(api: Api, test_images: dict[str, Any]
                                                   ) -> None:
    before = await api.running(test_images["sleeper"].ref)
    h = api.auth()
    url = "/v2/applications/77/restart-service"
    assert (await api.client.post(url, headers=h, json={})).status_code == 400
    r = await api.client.post(url, headers=h, json={"serviceName": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["message"]
    r = await api.client.post("/v2/applications/99/restart-service", headers=h,
                              json={"serviceName": "main"})
    assert r.status_code == 404
    r = await api.client.post(url, headers=h, json={"serviceName": 5})
    assert r.status_code == 400
    lock = hold_lock(api, "main")
    started = inspect(before["side"].id)["State"]["StartedAt"]
    for path, body in ((url, {"serviceName": "side"}),
                       ("/v2/applications/77/stop-service", {"serviceName": "side"}),
                       ("/v2/applications/77/restart", {}),
                       ("/v2/applications/77/purge", {})):
        r = await api.client.post(path, headers=h, json=body)
        assert r.status_code == 423, path
        assert r.json() == {"status": "failed", "message": r.json()["message"]}
    assert inspect(before["side"].id)["State"]["StartedAt"] == started
    r = await api.client.post(url, headers=h, json={"serviceName": "side", "force": True})
    assert r.status_code == 200
    lock.unlink()


async def test_app_restart_and_purge(api: Api, test_images: dict[str, Any]) -> None:
    before = await api.running(test_images["sleeper"].ref)
    r = await api.client.post("/v2/applications/78/restart", headers=api.auth())
    assert (r.status_code, r.text) == (200, "OK")
    assert (await api.dev.containers())["other"].id == before["other"].id
    r = await api.client.post("/v2/applications/78/purge", headers=api.auth(), json={})
    assert (r.status_code, r.text) == (200, "OK")
    from tests.device.api.conftest import wait_for

    await wait_for(api._all_running, what="reinstalled")
    after = await api.dev.containers()
    assert after["other"].id != before["other"].id and after["main"].id == before["main"].id


async def test_tags_are_kept_locally(api: Api) -> None:
    h = api.auth()
    assert (await api.client.get("/v2/device/tags", headers=h)).json() == {
        "status": "success", "tags": []}
    r = await api.client.patch("/v2/device/tags", headers=h, json={"tags": [
        {"name": "site", "value": "north"}, {"name": "rack", "value": "3"}]})
    assert r.status_code == 200
    r = await api.client.patch("/v2/device/tags", headers=h, json={"tags": [
        {"name": "site", "value": "south"}, {"name": "rack", "value": None}]})
    assert r.json()["tags"] == [{"id": 1, "name": "site", "value": "south"}]
    for bad in ({"tags": [{"value": "x"}]}, {"tags": "x"}, {"tags": [{"name": ""}]}):
        assert (await api.client.patch("/v2/device/tags", headers=h, json=bad)
                ).status_code == 400
    assert api.dev.store.get_config(key="deviceTags") is not None
    assert len((await api.client.get("/v2/device/tags", headers=h)).json()["tags"]) == 1


async def test_cleanup_volumes_removes_only_orphans(api: Api, unique: str) -> None:
    scope = api.dev.supervisor.device.scope
    labels = {"io.balena.supervised": "true", "io.balena.app-uuid": f"gone{unique}",
              "io.edgefleet.scope": scope}
    with images.engine_client() as c:
        c.post("/volumes/create", json={"Name": f"1_orphan{unique}", "Labels": labels})
        c.post("/volumes/create", json={"Name": f"1_kept{unique}", "Labels": {
            **labels, "io.balena.app-uuid": api.dev.app_uuid}})
    api.dev.supervisor.set_target(target=api.two_apps("127.0.0.1:5055/none:1"),
        source=TargetSource.DIRECT)
    r = await api.client.get("/v2/cleanup-volumes", headers=api.auth())
    assert r.status_code == 200 and r.json()["removed"] == [f"1_orphan{unique}"]
    with images.engine_client() as c:
        assert c.get(f"/volumes/1_orphan{unique}").status_code == 404
        assert c.get(f"/volumes/1_kept{unique}").status_code == 200


async def test_journal_logs_501_without_journald_and_streamed_with_it(
        api: Api, tmp_path: Path) -> None:
    r = await api.client.post("/v2/journal-logs", headers=api.auth(), json={"count": 5})
    assert r.status_code == 501
    assert "/v2/local/logs" in r.json()["message"]
    fake = tmp_path / "journalctl"
    fake.write_text('#!/bin/sh\necho "args: $*"\necho "line two"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    journal = tmp_path / "journal" / "m1"
    journal.mkdir(parents=True)
    (journal / "system.journal").write_bytes(b"")
    api.ctx.journalctl = str(fake)
    api.ctx.journal_dirs = (str(tmp_path / "journal"),)
    r = await api.client.post("/v2/journal-logs", headers=api.auth(), json={
        "count": 5, "unit": "docker.service", "format": "short-iso", "all": True})
    assert r.status_code == 200
    assert r.text == "args: --no-pager -a -n 5 -u docker.service -o short-iso\nline two\n"
    r = await api.client.post("/v2/journal-logs", headers=api.auth(), json={"unit": "a;rm"})
    assert r.status_code == 400


async def test_diagnostics_need_a_provider(api: Api) -> None:
    r = await api.client.get("/v2/diagnostics/checks", headers=api.auth())
    assert r.status_code == 501 and "edgefleet diagnose" in r.json()["message"]

    class Fake:
        def checks(self) -> dict[str, Any]:
            return {"diagnose_version": "x", "checks": []}

        def report(self, *, secrets: list[str]) -> str:
            return "report with " + ",".join(s[:4] for s in secrets)

    api.ctx.diagnostics = Fake()
    r = await api.client.get("/v2/diagnostics/checks", headers=api.auth())
    assert r.json() == {"diagnose_version": "x", "checks": []}
    r = await api.client.get("/v2/diagnostics/report", headers=api.auth())
    assert r.status_code == 200 and r.text == f"report with {api.key[:4]}"


async def test_diagnostics_through_the_cli_wiring(api: Api, tmp_path: Path) -> None:
    from edgefleet.cli.diagnostics_wiring import DiagnoseForApi

    config = tmp_path / "config.json"
    config.write_text('{"deviceType": "generic-amd64", "deviceApiKey": "s3cretdevicekey"}')
    api.ctx.diagnostics = DiagnoseForApi(config=api.ctx.config, config_path=config,
                                         engine_socket="/var/run/docker.sock",
                                         data_dir=tmp_path)
    r = await api.client.get("/v2/diagnostics/checks", headers=api.auth())
    assert r.status_code == 200
    names = {c["name"] for c in r.json()["checks"]}
    assert {"check_memory", "check_diskspace", "check_supervisor"} <= names
    r = await api.client.get("/v2/diagnostics/report", headers=api.auth())
    assert r.status_code == 200 and "--- COMMANDS ---" in r.text
    assert "s3cretdevicekey" not in r.text and api.key not in r.text
