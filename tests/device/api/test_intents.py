"""API actions are intents the planner turns into steps: they respect update locks (423
without force, nothing killed) and run through the executor like every other change."""

from __future__ import annotations

from typing import Any

import pytest

from tests.device.api.conftest import Api
from tests.device.api.test_v1 import hold_lock, inspect

pytestmark = pytest.mark.engine


async def test_regenerating_an_app_key_respects_a_held_lock(
        api: Api, test_images: dict[str, Any]) -> None:
    before = await api.running(test_images["sleeper"].ref)
    old = api.ctx.keys.app_key(app_uuid=api.dev.app_uuid)
    assert old
    lock = hold_lock(api, "side")
    try:
        r = await api.client.post("/v1/regenerate-api-key", headers=api.auth(old))
        assert r.status_code == 423, r.text
        assert "locked" in r.json()["message"]
        after = await api.dev.containers()
        assert after["main"].id == before["main"].id, "locked: the container was killed"
        assert after["main"].status == "running"
        assert api.ctx.keys.app_key(app_uuid=api.dev.app_uuid) == old, "key kept on 423"
        r = await api.client.post("/v1/regenerate-api-key", headers=api.auth(old),
                                  json={"force": True})
        assert r.status_code == 200 and r.text != old
    finally:
        lock.unlink()


ACTIONS = [
    ("/v2/applications/77/restart-service", {"serviceName": "side"}),
    ("/v2/applications/77/stop-service", {"serviceName": "side"}),
    ("/v2/applications/77/start-service", {"serviceName": "side"}),
    ("/v2/applications/77/restart", {}),
    ("/v2/applications/77/purge", {}),
    ("/v1/restart", {"appId": 77}),
    ("/v1/purge", {"appId": 77}),
    ("/v1/regenerate-api-key", {}),
]


async def test_every_container_action_respects_a_held_lock(
        api: Api, test_images: dict[str, Any]) -> None:
    before = await api.running(test_images["sleeper"].ref)
    started = {n: inspect(c.id)["State"]["StartedAt"] for n, c in before.items()}
    app_key = api.ctx.keys.app_key(app_uuid=api.dev.app_uuid)
    lock = hold_lock(api, "main")
    try:
        for path, body in ACTIONS:
            h = api.auth(app_key if "regenerate" in path else None)
            r = await api.client.post(path, headers=h, json=body)
            assert r.status_code == 423, (path, r.status_code, r.text)
        after = await api.dev.containers()
        assert {n: c.id for n, c in after.items()} == {n: c.id for n, c in before.items()}
        assert {n: inspect(c.id)["State"]["StartedAt"] for n, c in after.items()} == started
        # single-container app 78 is not locked: its stop is not refused
        lock_b = hold_lock(api, "other", app_id=78)
        try:
            for path in ("/v1/apps/78/stop", "/v1/apps/78/start"):
                r = await api.client.post(path, headers=api.auth(), json={})
                assert r.status_code == 423, (path, r.text)
        finally:
            lock_b.unlink()
    finally:
        lock.unlink()


async def test_an_api_restart_is_a_planned_step(api: Api, test_images: dict[str, Any]) -> None:
    before = await api.running(test_images["sleeper"].ref)
    r = await api.client.post("/v2/applications/77/restart-service", headers=api.auth(),
                              json={"serviceName": "side"})
    assert (r.status_code, r.text) == (200, "OK")
    assert (await api.dev.containers())["side"].id == before["side"].id
    messages = api.dev.log_messages()
    assert "Restarting service 'side' (restart requested through the API)" in messages, \
        messages[-10:]
