"""Issue 11, finding 7: an app-scoped supervisor key read the device's proxy credentials and
changed its hostname through /v1/device/host-config. Against a real `edgefleet supervisor run`
process: every device-wide endpoint answers 401 to an app key and changes nothing; the global
key still reaches them. And an app key's `force` (reboot, shutdown, update) overrides only its
own app's update lock, not another app's."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.device.store import Store
from edgefleet.model import formats
from tests.device.api.conftest import APP_A, Api, api, api_config  # noqa: F401 (fixtures)
from tests.device.api.test_runtime import start_supervisor
from tests.device.api.test_v1 import hold_lock
from tests.device.conftest import cleanup_scope, device, test_images  # noqa: F401 (fixtures)

pytestmark = pytest.mark.engine
PASSWORD = "proxy-pass-7781"
PROXY: dict[str, Any] = {"type": "socks5", "ip": "10.0.0.5", "port": 1080, "login": "proxyuser",
         "password": PASSWORD}
DEVICE_WIDE: list[tuple[str, str, Any]] = [
    ("GET", "/v1/device/host-config", None),
    ("PATCH", "/v1/device/host-config", {"network": {"hostname": "owned-by-app"}}),
    ("PATCH", "/v2/device/tags", {"tags": [{"name": "x", "value": "y"}]}),
    ("GET", "/v2/cleanup-volumes", None), ("POST", "/v2/journal-logs", {}),
    ("GET", "/v2/local/target-state", None), ("POST", "/v2/local/target-state", {"local": {}}),
    ("GET", "/v2/diagnostics/checks", None), ("GET", "/v2/diagnostics/report", None),
]


def test_an_app_key_cannot_reach_device_wide_endpoints(
        tmp_path: Path, unique: str, test_images: dict[str, Any]) -> None:  # noqa: F811
    scope = f"sc{unique}"
    img = test_images["sleeper"].ref
    rel = formats.release_from_compose(compose_yaml=APP_A, images={"main": img, "side": img})
    app_uuid = f"a{unique}"
    (tmp_path / "apps.json").write_text(json.dumps({"apps": {app_uuid: {
        "id": 77, "name": "appa", "releases": {"r1": rel.model_dump(mode="json")}}}}))
    proc, port, lines = start_supervisor(
        tmp_path, scope, {"apiEndpoint": "http://127.0.0.1:9", "deviceType": "generic-amd64"},
        "--apps", str(tmp_path / "apps.json"), "--reboot-command", "true")
    try:
        store = Store(path=tmp_path / "data" / "edgefleet.sqlite")
        url = f"http://127.0.0.1:{port}"
        glob = {"Authorization": f"Bearer {store.api_key(app_uuid='')}"}
        deadline = time.monotonic() + 60
        while not store.api_key(app_uuid=app_uuid) and time.monotonic() < deadline:
            time.sleep(0.2)
        app_key = store.api_key(app_uuid=app_uuid)
        assert app_key, "the app with a supervisor-api service gets a key: " + "".join(lines)
        mine = {"Authorization": f"Bearer {app_key}"}
        r = httpx.patch(f"{url}/v1/device/host-config", headers=glob,
                        json={"network": {"hostname": "edge1", "proxy": PROXY}})
        assert r.status_code == 200, r.text
        for method, path, body in DEVICE_WIDE:
            r = httpx.request(method, url + path, json=body, headers=mine, timeout=30)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert "global API key" in r.json()["message"]
            assert PASSWORD not in r.text
        r = httpx.get(f"{url}/v1/device/host-config", headers=glob)
        assert r.json()["network"] == {"hostname": "edge1", "proxy": PROXY}, \
            "the app key changed nothing; the global key still reads and writes"
        r = httpx.get(f"{url}/v2/device/tags", headers=glob)
        assert r.json().get("tags", []) == []
        r = httpx.get(f"{url}/v1/device", headers=mine)
        assert r.status_code == 200 and PASSWORD not in r.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cleanup_scope(scope)


async def test_an_app_keys_force_overrides_its_own_apps_lock_only(
        api: Api, test_images: dict[str, Any]) -> None:  # noqa: F811
    await api.running(test_images["sleeper"].ref)
    app_key = api.ctx.keys.app_key(app_uuid=api.dev.app_uuid)
    assert app_key
    lock = hold_lock(api, "other", 78)  # app B (no key of its own) holds its update lock
    try:
        for what, marker in (("reboot", "rebooted"), ("shutdown", "shut-down"),
                             ("update", "")):
            r = await api.client.post(f"/v1/{what}", headers=api.auth(app_key),
                                      json={"force": True})
            assert r.status_code == 423, (what, r.status_code, r.text)
            assert "locked" in r.json()["message"]
            await asyncio.sleep(0.3)
            assert not marker or not (api.tmp / marker).exists(), what
        assert not api.updates and not api.dev.supervisor.force_once
        r = await api.client.post("/v1/reboot", headers=api.auth(), json={"force": True})
        assert r.status_code == 202, "the global key's force overrides every lock"
    finally:
        lock.unlink()
    r = await api.client.post("/v1/update", headers=api.auth(app_key), json={"force": True})
    assert r.status_code == 204, "no other app locked: the app key's force is honoured"
