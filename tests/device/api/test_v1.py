"""v1 endpoints on the real engine: success and error codes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edgefleet.model.timeutil import now_ms
from tests.device.api.conftest import Api, wait_for
from tests.support import images

pytestmark = pytest.mark.engine


def inspect(cid: str) -> dict[str, Any]:
    with images.engine_client() as c:
        data: dict[str, Any] = c.get(f"/containers/{cid}/json").json()
        return data


def hold_lock(api: Api, service: str = "main", app_id: int = 77) -> Path:
    lock = Path(api.dev.supervisor.device.lock_root) / str(app_id) / service / "updates.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    return lock


async def test_healthy_fails_when_the_loop_is_stuck_or_fetches_are_old(api: Api) -> None:
    sup = api.dev.supervisor
    state = sup.state
    assert (await api.client.get("/v1/healthy")).status_code == 200
    async with sup.busy:  # the loop cannot start a round meanwhile: a stuck apply
        state.apply_started_ms = now_ms() - 3_600_000  # an apply running for an hour
        state.apply_download_ms = 0
        r = await api.client.get("/v1/healthy")
        assert r.status_code == 500 and r.text.startswith("Unhealthy") and "apply" in r.text
        state.apply_download_ms = 3_590_000  # ... nearly all of it downloading: fine
        assert (await api.client.get("/v1/healthy")).status_code == 200
        state.apply_started_ms = None
        state.last_loop_ms = now_ms() - 3_600_000  # the loop has not turned for an hour
        r = await api.client.get("/v1/healthy")
        assert r.status_code == 500 and "loop" in r.text
        state.last_loop_ms = now_ms()
    api.ctx.started_ms = now_ms() - 3_600_000  # managed, never fetched for an hour
    r = await api.client.get("/v1/healthy")
    assert r.status_code == 500 and "fetch" in r.text
    sup.record_fetch()
    assert (await api.client.get("/v1/healthy")).status_code == 200


async def test_blink_update_and_its_callback(api: Api) -> None:
    r = await api.client.post("/v1/blink", headers=api.auth())
    assert (r.status_code, r.text) == (200, "OK")
    r = await api.client.post("/v1/update", headers=api.auth(), json={"force": True})
    assert r.status_code == 204 and api.updates == ["update"]
    assert api.dev.supervisor.force_once
    r = await api.client.post("/v1/update", headers=api.auth(), json={"force": "maybe"})
    assert r.status_code == 400 and api.updates == ["update"]


async def test_reboot_and_shutdown_run_the_host_command_unless_locked(
        api: Api, test_images: dict[str, Any]) -> None:
    await api.running(test_images["sleeper"].ref)
    lock = hold_lock(api)
    for what, marker in (("reboot", "rebooted"), ("shutdown", "shut-down")):
        r = await api.client.post(f"/v1/{what}", headers=api.auth(), json={})
        assert r.status_code == 423
        assert r.json()["status"] == "failed" and "locked" in r.json()["message"]
        await asyncio.sleep(0.3)
        assert not (api.tmp / marker).exists()
        r = await api.client.post(f"/v1/{what}", headers=api.auth(), json={"force": True})
        assert r.status_code == 202 and r.json() == {"Data": "OK", "Error": None}
        await wait_for(lambda m=marker: _exists(api.tmp / m), what=f"{what} command")  # type: ignore[misc]
    lock.unlink()


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def test_restart_keeps_containers_and_purge_recreates_them_without_data(
        api: Api, test_images: dict[str, Any]) -> None:
    before = await api.running(test_images["sleeper"].ref)
    started = inspect(before["main"].id)["State"]["StartedAt"]
    r = await api.client.post("/v1/restart", headers=api.auth(), json={"appId": 77})
    assert (r.status_code, r.text) == (200, "OK")
    after = await api.dev.containers()
    assert after["main"].id == before["main"].id, "restarted, not recreated"
    assert inspect(after["main"].id)["State"]["StartedAt"] != started
    assert after["other"].id == before["other"].id
    assert (await api.client.post("/v1/restart", headers=api.auth(),
                                  json={"appId": 9999})).status_code == 404
    assert (await api.client.post("/v1/restart", headers=api.auth(),
                                  json={})).status_code == 400

    volume = "77_data"
    with images.engine_client() as c:
        mount = c.get(f"/volumes/{volume}").json()["Mountpoint"]
    (Path(mount) / "marker").write_text("x")
    lock = hold_lock(api, "side")
    r = await api.client.post("/v1/purge", headers=api.auth(), json={"appId": 77})
    assert r.status_code == 423
    assert (await api.dev.containers())["main"].id == before["main"].id, "locked: untouched"
    lock.unlink()
    r = await api.client.post("/v1/purge", headers=api.auth(), json={"appId": 12345})
    assert r.status_code == 404 and "12345" in r.json()["message"]
    assert (await api.client.post("/v1/purge", headers=api.auth(),
                                  json={"appId": "x"})).status_code == 400
    r = await api.client.post("/v1/purge", headers=api.auth(), json={"appId": 77})
    assert r.status_code == 200 and r.json() == {"Data": "OK", "Error": ""}
    await wait_for(lambda: api._all_running(), what="app reinstalled after purge")
    again = await api.dev.containers()
    assert again["main"].id != before["main"].id and again["other"].id == before["other"].id
    with images.engine_client() as c:
        mount = c.get(f"/volumes/{volume}").json()["Mountpoint"]
    assert not (Path(mount) / "marker").exists(), "the volume was recreated empty"


async def test_single_container_app_endpoints(api: Api, test_images: dict[str, Any]) -> None:
    before = await api.running(test_images["sleeper"].ref)
    r = await api.client.get("/v1/apps/77", headers=api.auth())
    assert r.status_code == 400 and "single-container" in r.json()["message"]
    r = await api.client.get("/v1/apps/78", headers=api.auth())
    assert r.status_code == 200
    info = r.json()
    assert info["containerId"] == before["other"].id and info["commit"] == "c1"
    assert info["env"]["BALENA_APP_ID"] == "78"
    r = await api.client.post("/v1/apps/78/stop", headers=api.auth(), json={})
    assert r.status_code == 200 and r.json()["containerId"] == before["other"].id
    await asyncio.sleep(1.5)  # the loop leaves a stopped service stopped
    c = (await api.dev.containers())["other"]
    # "created" when another test session on the shared engine deleted the image meanwhile
    # and the loop had to reinstall the service: it must still not run.
    assert c.status in ("exited", "created"), (c, api.dev.log_messages()[-15:])
    r = await api.client.post("/v1/apps/78/start", headers=api.auth())
    assert r.status_code == 200
    assert (await api.dev.containers())["other"].status == "running"
    assert (await api.client.post("/v1/apps/5/stop", headers=api.auth())).status_code == 404
    assert (await api.client.get("/v1/apps/abc", headers=api.auth())).status_code == 400


async def test_device_and_host_config(api: Api) -> None:
    r = await api.client.get("/v1/device", headers=api.auth())
    assert r.status_code == 200
    dev = r.json()
    assert dev["status"] == "Idle" and dev["api_port"] == api.ctx.api_port
    assert dev["supervisor_version"].startswith("17.")
    r = await api.client.get("/v1/device/host-config", headers=api.auth())
    assert r.status_code == 200 and r.json()["network"]["proxy"] == {}
    body = {"network": {"hostname": "edge-1", "proxy": {"type": "socks5", "ip": "10.0.0.9",
                                                         "port": 1080, "noProxy": ["a.lan"]}}}
    r = await api.client.patch("/v1/device/host-config", headers=api.auth(), json=body)
    assert (r.status_code, r.text) == (200, "OK")
    got = (await api.client.get("/v1/device/host-config", headers=api.auth())).json()
    assert got == body
    for bad in ({"network": {"hostname": "-bad-"}}, {"network": {"proxy": {"port": 99999}}},
                {"network": {"proxy": {"type": "ftp"}}}, {"network": {"proxy": {"ip": "1.2.3.4"}}},
                {"nope": 1}):
        r = await api.client.patch("/v1/device/host-config", headers=api.auth(), json=bad)
        assert r.status_code == 400, bad
    assert (await api.client.get("/v1/device/host-config", headers=api.auth())).json() == body
