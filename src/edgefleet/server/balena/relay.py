"""balena's supervisor relay, `POST /supervisor/<path>`: how balena-sdk (and so the balena
CLI's `device restart`, `reboot`, `shutdown`, `purge`, `identify`, `start-service`...) calls a
device's supervisor API. The body names the device (`uuid` or `deviceId`), and carries the
supervisor call's `data` (and its `method`, POST unless said). The call goes through the
device's tunnel with the tunnel actions' machinery (same access check, same audit trail) and
the supervisor's answer (status and body) comes back as it is.

`POST /application/<id>/restart` (the CLI's `fleet restart`) is the same call, `/v1/restart`,
to every connected device of the fleet."""

from __future__ import annotations

import re
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from edgefleet.server import tables as t
from edgefleet.server.authz import Access, allow
from edgefleet.server.balena.provisioning import json_body
from edgefleet.server.org_schemas import MAX_ID
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel.actions import Target, audited_call, device_target, held_elsewhere
from edgefleet.server.tunnel.forward import FORWARDED, HostGone, forward_http
from edgefleet.server.tunnel.hub import TunnelHub

METHODS = ("GET", "POST", "PATCH", "DELETE")
PATH = re.compile(r"(ping|v[12]/[A-Za-z0-9_/-]{1,200})")
"""The supervisor API paths that may be relayed: `/ping`, `/v1/...`, `/v2/...`."""
ACTION = re.compile(r"v1/(reboot|shutdown|purge|restart|blink)|"
                    r"v2/applications/[^/]+/(restart-service|start-service|stop-service)")
"""Relayed paths that are remote actions: they get the action's permission and terms
(`action_rules`; the CLI command itself is the confirmation, so a support agent, who must
give a note, uses `edgefleet device ...` instead)."""


def action_of(path: str) -> str | None:
    m = ACTION.fullmatch(path)
    if m is None:
        return None
    name = m.group(1) or m.group(2)
    return "identify" if name == "blink" else name


def target_of(state: ServerState, a: Access, body: dict[str, Any], path: str
              ) -> tuple[Target, dict[str, Any]]:
    """The device the body names, with the route's permission and, for an action, its own
    (the tunnel actions' check)."""
    device = body.get("uuid")
    if device is None and body.get("deviceId") is not None:
        device_id = body["deviceId"]
        if not isinstance(device_id, int) or isinstance(device_id, bool):
            raise HTTPException(400, "deviceId must be a number (the device's id)")
        with state.db.session() as s:
            device = s.execute(sa.select(t.Device.uuid).where(t.Device.id == device_id)
                               ).scalar()
        if device is None:
            raise HTTPException(404, f"no device with id {device_id}")
    if not isinstance(device, str) or not device:
        raise HTTPException(400, "the body names no device: give `uuid` (a string) or "
                                 "`deviceId` (a number)")
    return device_target(state, a, device=device, action=action_of(path), confirmed=True)


def router(*, state: ServerState, hub: TunnelHub) -> APIRouter:
    api = APIRouter(tags=["balena"])

    @api.post("/supervisor/{path:path}", responses={400: {}, 404: {}, 409: {}, 502: {},
                                                    503: {}}, response_model=None)
    async def relay(path: str, request: Request,
                    a: Access = Depends(allow(state, "device.action"))) -> Response:
        """balena's supervisor relay: `{"uuid"|"deviceId", "method"?, "data"?}` is sent to
        the device's supervisor API at `/<path>` through its tunnel; its answer is relayed."""
        if not PATH.fullmatch(path):
            raise HTTPException(404, f"/supervisor/{path[:100]} is not relayed: only /ping, "
                                     "/v1/... and /v2/... of the supervisor API are")
        body = await json_body(request)
        method = str(body.get("method") or "POST").upper()
        if method not in METHODS:
            raise HTTPException(400, f"method {method[:20]!r}: one of {', '.join(METHODS)}")
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise HTTPException(400, "`data` must be a JSON object")
        target, terms = await run_in_threadpool(target_of, state, a, body, path)
        if (host := held_elsewhere(state, hub, target=target, request=request)) is not None:
            return await forward_http(request, host=host)
        reply = await audited_call(
            state, hub, user=a.user, target=target, kind="action", what=f"relay /{path}",
            method=method, path=f"/{path}",
            body=(data or {}) if method in ("POST", "PATCH") else None, terms=terms)
        answer = reply.json()
        if isinstance(answer, str):
            return Response(reply.body, status_code=reply.status, media_type="text/plain")
        return JSONResponse(answer, status_code=reply.status)

    @api.post("/application/{app_id}/restart", responses={403: {}, 404: {}, 502: {}},
              response_model=None)
    async def restart_fleet(request: Request, app_id: int = Path(ge=1, le=MAX_ID),
                            a: Access = Depends(allow(state, "device.action"))) -> Response:
        """balena's fleet restart: `/v1/restart` on each device of the fleet that is
        connected (here or through the server process holding its tunnel). Answers which
        were restarted, which are offline, and (502) which failed."""
        uuids = await run_in_threadpool(fleet_devices, state, a, app_id)
        done: dict[str, list[str]] = {"restarted": [], "offline": []}
        failed: dict[str, str] = {}
        for uuid in uuids:
            try:
                target, terms = await run_in_threadpool(
                    device_target, state, a, device=uuid, action="restart", confirmed=True)
                status = await restart_one(target, terms, request, app_id=app_id, a=a)
            except HTTPException as exc:
                if exc.status_code in (409, 503):  # never reported its API key / no tunnel
                    done["offline"].append(uuid)
                    continue
                failed[uuid] = f"HTTP {exc.status_code}: {exc.detail}"
                continue
            if status < 300:
                done["restarted"].append(uuid)
            else:
                failed[uuid] = f"the supervisor answered HTTP {status}"
        if failed:
            return JSONResponse({"message": "restart failed on " + "; ".join(
                f"{u}: {why}" for u, why in failed.items()), **done, "failed": failed},
                status_code=502)
        return JSONResponse(done)

    async def restart_one(target: Target, terms: dict[str, Any], request: Request, *,
                          app_id: int, a: Access) -> int:
        """One device's `/v1/restart`: its HTTP status (503 raised when not connected)."""
        host = held_elsewhere(state, hub, target=target, request=request)
        if host is not None:
            headers = {FORWARDED: "1", "Authorization": request.headers.get("authorization",
                                                                            "")}
            try:
                async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=10.0)) as c:
                    r = await c.post(f"{host}/supervisor/v1/restart", headers=headers,
                                     json={"uuid": target.uuid, "data": {"appId": app_id}})
            except (HostGone, httpx.ConnectError):
                await hub.forget_host(host)
                raise HTTPException(503, "not connected") from None
            if r.status_code in (409, 503):
                raise HTTPException(r.status_code, "not connected")
            return r.status_code
        reply = await audited_call(
            state, hub, user=a.user, target=target, kind="action", what="relay /v1/restart",
            method="POST", path="/v1/restart", body={"appId": app_id}, terms=terms)
        return reply.status

    return api


def fleet_devices(state: ServerState, a: Access, app_id: int) -> list[str]:
    """The uuids of a fleet's devices (404 when the user does not see the fleet)."""
    with state.db.session() as s:
        fleet = s.get(t.Fleet, app_id)
        if fleet is None:
            raise HTTPException(404, f"no application {app_id}")
        a.fleet(s, fleet.uuid)
        return [str(u) for u in s.execute(sa.select(t.Device.uuid).where(
            t.Device.fleet_id == fleet.id).order_by(t.Device.id)).scalars()]
