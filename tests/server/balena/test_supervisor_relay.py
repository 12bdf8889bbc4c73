"""balena's supervisor relay (`POST /supervisor/...`, what balena-sdk sends for `balena device
restart`, `reboot`...) against a real server, with a device tunnel whose supervisor API is a
recorder: the call arrives with the device's API key and the SDK's `data`, the supervisor's
answer comes back as it is, other users and unrelayed paths are refused, and it is audited."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import httpx
import websockets

from edgefleet.tunnel.mux import Mux
from edgefleet.tunnel.stream import Stream
from edgefleet.tunnel.websocket import WebsocketsTransport
from tests.server.conftest import DeviceInfo, new_tenant, register
from tests.support.fleet_server import RunningServer

SECRET = "r" * 32


def supervisor(seen: list[dict[str, Any]]) -> Any:
    """A supervisor API that records each call; a reboot is refused with 423 (locked)."""
    async def serve(stream: Stream) -> None:
        await stream.accept()
        conn = h11.Connection(our_role=h11.SERVER)
        call: dict[str, Any] = {"port": stream.request.get("port"), "body": b""}
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = await stream.read()
                conn.receive_data(bytes(chunk.data) if chunk.kind == "data" else b"")
            elif isinstance(event, h11.Request):
                call.update(method=event.method.decode(), path=event.target.decode(),
                            auth=dict(event.headers).get(b"authorization", b"").decode())
            elif isinstance(event, h11.Data):
                call["body"] += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        seen.append(call)
        status, answer = (423, {"Error": "Updates are locked"}) if call["path"] == \
            "/v1/reboot" else (200, {"Data": "OK", "Error": None})
        data = json.dumps(answer).encode()
        out = conn.send(h11.Response(status_code=status, headers=[
            ("Content-Type", "application/json"), ("Content-Length", str(len(data)))]))
        await stream.write((out or b"") + (conn.send(h11.Data(data=data)) or b"")
                           + (conn.send(h11.EndOfMessage()) or b""))
        await stream.write_eof()
    return serve


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(path, json=body)


@asynccontextmanager
async def fake_supervisor(server: RunningServer, device: DeviceInfo
                          ) -> AsyncIterator[list[dict[str, Any]]]:
    """`device`'s tunnel held open with `supervisor` answering; what it was asked."""
    seen: list[dict[str, Any]] = []
    url = server.url.replace("http://", "ws://") + f"/device/v3/{device.uuid}/tunnel"
    async with websockets.connect(url, additional_headers={
            "Authorization": f"Bearer {device.api_key}"}) as conn:
        mux = Mux(WebsocketsTransport(conn), initiator=True, handler=supervisor(seen))
        runner = asyncio.create_task(mux.run())
        try:
            yield seen
        finally:
            await mux.close()
            await runner


async def test_the_supervisor_relay_reaches_the_device(server: RunningServer,
                                                       device: DeviceInfo) -> None:
    http = device.fleet.tenant.http
    app_id = device.fleet.id
    restart = {"deviceId": device.id, "appId": app_id, "data": {"appId": app_id}}
    r = await asyncio.to_thread(post, http, "/supervisor/v1/restart", restart)
    assert r.status_code == 409 and "has not reported its supervisor API key" in r.text
    await asyncio.to_thread(device.http.patch, "/device/v3/state", json={
        device.uuid: {"api_port": 48484, "api_secret": SECRET}})
    deadline = time.monotonic() + 5
    while (r := await asyncio.to_thread(post, http, "/supervisor/v1/restart", restart)
           ).status_code == 409:
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.1)
    assert r.status_code == 503 and "not connected to the tunnel" in r.text, r.text

    async with fake_supervisor(server, device) as seen:
        while (r := await asyncio.to_thread(post, http, "/supervisor/v1/restart", restart)
               ).status_code == 503:
            assert time.monotonic() < deadline + 10, r.text
            await asyncio.sleep(0.1)
        assert r.status_code == 200 and r.json() == {"Data": "OK", "Error": None}, r.text
        assert seen[-1] == {"port": 48484, "method": "POST", "path": "/v1/restart",
                            "auth": f"Bearer {SECRET}",
                            "body": json.dumps({"appId": app_id}).encode()}

        r = await asyncio.to_thread(post, http, "/supervisor/v1/reboot", {
            "deviceId": device.id, "data": {"force": False}})
        assert r.status_code == 423 and r.json() == {"Error": "Updates are locked"}
        r = await asyncio.to_thread(
            post, http, f"/supervisor/v2/applications/{app_id}/restart-service",
            {"uuid": device.uuid, "data": {"appId": app_id, "serviceName": "main"}})
        assert r.status_code == 200, r.text
        assert json.loads(seen[-1]["body"]) == {"appId": app_id, "serviceName": "main"}
        r = await asyncio.to_thread(post, http, "/supervisor/v1/device",
                                    {"uuid": device.uuid, "method": "GET"})
        assert r.status_code == 200 and (seen[-1]["method"], seen[-1]["body"]) == \
            ("GET", b""), seen[-1]
        calls = len(seen)

        other = new_tenant(server).http
        r = await asyncio.to_thread(post, other, "/supervisor/v1/restart", restart)
        assert r.status_code == 404, r.text
        r = await asyncio.to_thread(httpx.post, f"{server.url}/supervisor/v1/restart",
                                    json=restart)
        assert r.status_code == 401, r.text
        for path, body in (("/supervisor/v3/x", restart),
                           ("/supervisor/v1/%2e%2e/x", restart),
                           ("/supervisor/v1/blink", {"data": {}}),
                           ("/supervisor/v1/blink", {"uuid": device.uuid,
                                                     "method": "TRACE"}),
                           ("/supervisor/v1/blink", {"deviceId": "1"})):
            r = await asyncio.to_thread(post, http, path, body)
            assert r.status_code in (400, 404), (path, body, r.text)
        assert len(seen) == calls, "nothing refused reached the device"

    audit = (await asyncio.to_thread(http.get, "/api/v1/audit",
                                     params={"device": device.uuid})).json()
    assert [(a["target"], a["command"], a["result"]) for a in audit[:2]] == [
        ("relay /v1/device", "GET /v1/device", "HTTP 200"),
        (f"relay /v2/applications/{app_id}/restart-service",
         f"POST /v2/applications/{app_id}/restart-service", "HTTP 200")]
    assert all(a["username"] == device.fleet.tenant.username for a in audit)


async def test_fleet_restart_restarts_each_connected_device(server: RunningServer,
                                                            device: DeviceInfo) -> None:
    """`POST /application/<id>/restart` (`balena fleet restart`): `/v1/restart` with the
    fleet's appId on each connected device; the others are listed offline; another user's
    fleet is not found."""
    http = device.fleet.tenant.http
    app_id = device.fleet.id
    spare = register(server, device.fleet)  # never connects nor reports
    await asyncio.to_thread(device.http.patch, "/device/v3/state", json={
        device.uuid: {"api_port": 48484, "api_secret": SECRET}})
    try:
        async with fake_supervisor(server, device) as seen:
            deadline = time.monotonic() + 10
            while True:
                r = await asyncio.to_thread(http.post, f"/application/{app_id}/restart")
                if r.status_code != 200 or r.json()["restarted"] or \
                        time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)  # the tunnel is not registered yet
            assert r.status_code == 200, r.text
            assert r.json() == {"restarted": [device.uuid], "offline": [spare.uuid]}
            assert [(c["path"], json.loads(c["body"])) for c in seen] == [
                ("/v1/restart", {"appId": app_id})]
            other = new_tenant(server).http
            r = await asyncio.to_thread(other.post, f"/application/{app_id}/restart")
            assert r.status_code == 404, r.text
            assert len(seen) == 1
    finally:
        spare.http.close()
