"""balena's supervisor relay, `POST /supervisor/<path>`: how balena-sdk (and so the balena
CLI's `device restart`, `reboot`, `shutdown`, `purge`, `identify`, `start-service`...) calls a
device's supervisor API. The body names the device (`uuid` or `deviceId`), and carries the
supervisor call's `data` (and its `method`, POST unless said). The call goes through the
device's tunnel with the tunnel actions' machinery (same access check, same audit trail) and
the supervisor's answer (status and body) comes back as it is."""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.access import require_user
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel.actions import Target, audited_call, device_target, held_elsewhere
from edgefleet.server.tunnel.forward import forward_http
from edgefleet.server.tunnel.hub import TunnelHub

METHODS = ("GET", "POST", "PATCH", "DELETE")
PATH = re.compile(r"(ping|v[12]/[A-Za-z0-9_/-]{1,200})")
"""The supervisor API paths that may be relayed: `/ping`, `/v1/...`, `/v2/...`."""


def target_of(state: ServerState, user: keys.UserPrincipal, body: dict[str, Any]) -> Target:
    """The device the body names, if it is one of the user's (the tunnel actions' check)."""
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
    return device_target(state, user=user, device=device)


def router(*, state: ServerState, hub: TunnelHub) -> APIRouter:
    api = APIRouter(tags=["balena"])

    @api.post("/supervisor/{path:path}", responses={400: {}, 404: {}, 409: {}, 502: {},
                                                    503: {}}, response_model=None)
    async def relay(path: str, request: Request) -> Response:
        """balena's supervisor relay: `{"uuid"|"deviceId", "method"?, "data"?}` is sent to
        the device's supervisor API at `/<path>` through its tunnel; its answer is relayed."""
        user = require_user(await state.principal(request.headers.get("authorization")))
        if not PATH.fullmatch(path):
            raise HTTPException(404, f"/supervisor/{path[:100]} is not relayed: only /ping, "
                                     "/v1/... and /v2/... of the supervisor API are")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        method = str(body.get("method") or "POST").upper()
        if method not in METHODS:
            raise HTTPException(400, f"method {method[:20]!r}: one of {', '.join(METHODS)}")
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise HTTPException(400, "`data` must be a JSON object")
        target = await run_in_threadpool(target_of, state, user, body)
        if (host := held_elsewhere(state, hub, target=target, request=request)) is not None:
            return await forward_http(request, host=host)
        reply = await audited_call(
            state, hub, user=user, target=target, kind="action", what=f"relay /{path}",
            method=method, path=f"/{path}",
            body=(data or {}) if method in ("POST", "PATCH") else None)
        answer = reply.json()
        if isinstance(answer, str):
            return Response(reply.body, status_code=reply.status, media_type="text/plain")
        return JSONResponse(answer, status_code=reply.status)

    return api
