"""Actions and diagnostics from the server: calls of a device's supervisor API through its
tunnel, with the device's own API key (from its reports); diagnostics runs are stored."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import h11
import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from edgefleet.server import action_rules, keys
from edgefleet.server import tables as t
from edgefleet.server.authz import Access, allow
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel import audit
from edgefleet.server.tunnel.action_routes import (
    ActionBody,
    action_endpoint,
    values_visible,
    without_values,
)
from edgefleet.server.tunnel.device_http import DeviceHttpError, DeviceReply, request
from edgefleet.server.tunnel.forward import HostGone, forward_http, holder
from edgefleet.server.tunnel.hub import NotConnected, TunnelHub
from edgefleet.server.user_api import ERRORS
from edgefleet.tunnel.mux import StreamRefused
from edgefleet.tunnel.stream import StreamReset

ACTIONS: dict[str, tuple[str, bool]] = {
    # action: (supervisor API path, needs a service)
    "restart": ("/v1/restart", False),
    "restart-service": ("/v2/applications/{app}/restart-service", True),
    "start-service": ("/v2/applications/{app}/start-service", True),
    "stop-service": ("/v2/applications/{app}/stop-service", True),
    "reboot": ("/v1/reboot", False),
    "shutdown": ("/v1/shutdown", False),
    "purge": ("/v1/purge", False),
    "identify": ("/v1/blink", False),
}


@dataclass(frozen=True)
class Target:
    """What the server knows to reach a device's supervisor API."""

    device_id: int
    uuid: str
    app_id: int
    api_port: int
    api_key: str
    tunnel_host: str = ""


def now_ms() -> int:
    return int(time.time() * 1000)


async def call_device(*, hub: TunnelHub, target: Target, method: str, path: str,
                      body: dict[str, Any] | None = None) -> DeviceReply:
    """One supervisor-API call through the tunnel (503 if the device is not connected)."""
    try:
        stream = await hub.open(device_id=target.device_id,
                                request={"kind": "tcp", "host": "127.0.0.1",
                                         "port": target.api_port})
    except (NotConnected, StreamRefused) as exc:
        raise HTTPException(503, f"device {target.uuid[:7]}: {exc}") from None
    try:
        return await request(stream, method=method, path=path, api_key=target.api_key,
                             body=body)
    except (StreamReset, DeviceHttpError, h11.ProtocolError) as exc:
        raise HTTPException(502, f"device {target.uuid[:7]}: the supervisor API call "
                                 f"{path} failed: {exc}") from None
    finally:
        await stream.reset("done")


def target_for(d: t.Device) -> Target:
    """How to reach a device's supervisor API; 409 before its first state report."""
    reported = json.loads(d.reported or "{}")
    key, port = reported.get("api_secret"), reported.get("api_port")
    if not key or not port:
        raise HTTPException(409, f"device {d.uuid[:7]} has not reported its supervisor "
                                 "API key yet (it does with its first state report)")
    return Target(device_id=d.id, uuid=d.uuid, app_id=d.fleet_id, api_port=int(port),
                  api_key=str(key), tunnel_host=d.tunnel_host)


def device_target(state: ServerState, a: Access, *, device: str, action: str | None = None,
                  confirmed: bool = False, note: str | None = None
                  ) -> tuple[Target, dict[str, Any]]:
    """The device (by uuid, uuid prefix or name) with the route's permission and, for an
    action, its terms (`action_rules`: confirmation, support note) as audit detail."""
    terms: dict[str, Any] = {}
    with state.db.session() as s:
        d = a.device(s, device)
        if action is not None:
            terms = action_rules.authorize(state.db, s, user=a.user, device=d, action=action,
                                           confirmed=confirmed, note=note)
        return target_for(d), terms


def held_elsewhere(state: ServerState, hub: TunnelHub, *, target: Target,
                   request: Request) -> str | None:
    """The server process holding the device's tunnel when it is not this one (the request
    is then forwarded there), else None."""
    if hub.connected(target.device_id):
        return None
    return holder(tunnel_host=target.tunnel_host, own_url=state.settings.own_url,
                  headers=request.headers)


async def audited_call(state: ServerState, hub: TunnelHub, *, user: keys.UserPrincipal,
                       target: Target, kind: str, what: str, method: str, path: str,
                       body: dict[str, Any] | None,
                       terms: dict[str, Any] | None = None, source: str = "") -> DeviceReply:
    """`call_device`, recorded in the audit trail (who, which device, what, the result);
    the one implementation for the API and the dashboard (`source="dashboard"` is noted
    after the command)."""
    command = f"{method} {path}" + (f" ({source})" if source else "")
    session = await run_in_threadpool(lambda: audit.begin(
        state.db, user=user, device_uuid=target.uuid, kind=kind, target=what,
        command=command, extra=terms))
    result = "failed"
    try:
        reply = await call_device(hub=hub, target=target, method=method, path=path, body=body)
        result = f"HTTP {reply.status}"
        return reply
    except HTTPException as exc:
        result = f"HTTP {exc.status_code}: {exc.detail}"
        raise
    finally:
        await run_in_threadpool(lambda: audit.end(state.db, session_id=session,
                                                  bytes_up=0, bytes_down=0, result=result))


def router(*, state: ServerState, hub: TunnelHub) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["remote access"], responses=ERRORS)

    def target_of(a: Access, device: str, action: str | None = None,
                  body: ActionBody | None = None) -> tuple[Target, dict[str, Any]]:
        return device_target(state, a, device=device, action=action if body else None,
                             confirmed=bool(body and body.confirm),
                             note=body.note if body else None)

    async def forwarded(target: Target, request: Request) -> Response | None:
        """The answer of the process holding the device's tunnel, or None to call here
        (also when that process is gone: the device is then not connected)."""
        host = held_elsewhere(state, hub, target=target, request=request)
        if host is None:
            return None
        try:
            return await forward_http(request, host=host)
        except HostGone:
            await hub.forget_host(host)
            return None

    async def audited(user: keys.UserPrincipal, target: Target, kind: str, what: str,
                      method: str, path: str, body: dict[str, Any] | None,
                      terms: dict[str, Any] | None = None) -> DeviceReply:
        return await audited_call(state, hub, user=user, target=target, kind=kind, what=what,
                                  method=method, path=path, body=body, terms=terms)

    async def device_action(device: str, action: str, request: Request,
                            body: ActionBody | None, a: Access) -> dict[str, Any] | Response:
        """Run an action on the device's supervisor (the route's permission from
        `roles.action_permission`; stopping actions need `confirm`, and from a support agent
        a `note`)."""
        user = a.user
        body = body or ActionBody()
        target, terms = await run_in_threadpool(target_of, a, device, action, body)
        if (elsewhere := await forwarded(target, request)) is not None:
            return elsewhere
        template, needs_service = ACTIONS[action]
        if needs_service and not body.service:
            raise HTTPException(400, f"{action} needs a service")
        payload: dict[str, Any] = {"appId": target.app_id}
        if body.service:
            payload["serviceName"] = body.service
        if body.force:
            payload["force"] = True
        path = template.format(app=target.app_id)
        reply = await audited(user, target, "action", action + (
            f" {body.service}" if body.service else ""), "POST", path, payload, terms)
        if reply.status >= 400:
            raise HTTPException(502, f"the device refused {action}: HTTP {reply.status} "
                                     f"{str(reply.json())[:300]}")
        return {"action": action, "status": reply.status, "answer": reply.json()}

    def _values_visible(a: Access, device_id: int) -> bool:
        with state.db.session() as s:
            found = s.get(t.Device, device_id)
            return found is not None and values_visible(s, a, found)

    for name in ACTIONS:
        api.add_api_route(
            f"/devices/{{device}}/actions/{name}", action_endpoint(name, device_action, state),
            methods=["POST"], response_model=None, name=f"device_action_{name}",
            responses={404: {}, 409: {}, 428: {}, 502: {}, 503: {}},
            summary=f"Run {name} on the device's supervisor")

    @api.post("/devices/{device}/diagnose", responses={404: {}, 409: {}, 502: {}, 503: {}},
              response_model=None)
    async def diagnose(device: str, request: Request,
                       a: Access = Depends(allow(state, "device.diagnose"))
                       ) -> dict[str, Any] | Response:
        """Run the device's health checks and diagnostics report, read its current state,
        and store it all with the server's target (readable later, even if the device dies).
        Without `variable.read` (a support agent) the target and the services' environment
        and configuration are left out of the answer."""
        user = a.user
        target, _terms = await run_in_threadpool(target_of, a, device)
        if (elsewhere := await forwarded(target, request)) is not None:
            return elsewhere
        parts: dict[str, Any] = {}
        for name, path in (("checks", "/v2/diagnostics/checks"),
                           ("report", "/v2/diagnostics/report"),
                           ("status", "/v2/state/status"),
                           ("current", "/v2/applications/state")):
            reply = await audited(user, target, "diagnostics", name, "GET", path, None)
            parts[name] = reply.json() if reply.status < 400 else {
                "error": f"HTTP {reply.status}", "body": reply.json()}
        server_target = await state.target(target.device_id, target.app_id)
        parts["target"] = json.loads(server_target.body) if server_target else None
        report = parts.pop("report")

        def store() -> int:
            with state.db.writing() as s:
                row = t.DeviceDiagnostics(
                    device_uuid=target.uuid, username=user.username, created_ms=now_ms(),
                    checks=json.dumps(parts["checks"]),
                    report=report if isinstance(report, str) else json.dumps(report),
                    state=json.dumps({k: parts[k] for k in ("status", "current", "target")}))
                s.add(row)
                s.flush()
                return int(row.id)

        run_id = await run_in_threadpool(store)
        answer = {"id": run_id, "device": target.uuid, "checks": parts["checks"],
                  "report": report, "status": parts["status"], "current": parts["current"],
                  "target": parts["target"]}
        shown = await run_in_threadpool(lambda: _values_visible(a, target.device_id))
        return answer if shown else without_values(answer)

    @api.get("/devices/{device}/diagnostics", responses={404: {}})
    def diagnostics(device: str, run: int | None = Query(None, ge=1),
                    a: Access = Depends(allow(state, "diagnostics.read"))
                    ) -> list[dict[str, Any]]:
        """Stored diagnostics runs of a device, newest first (one run, in full, with `run`;
        without values for a caller who may not read variables)."""
        with state.db.session() as s:
            found = a.device(s, device)
            uuid = found.uuid
            values = values_visible(s, a, found)
            q = sa.select(t.DeviceDiagnostics).where(t.DeviceDiagnostics.device_uuid == uuid)
            if run is not None:
                q = q.where(t.DeviceDiagnostics.id == run)
            rows = list(s.execute(q.order_by(t.DeviceDiagnostics.id.desc())).scalars())
        if run is not None and not rows:
            raise HTTPException(404, f"device {uuid[:7]} has no diagnostics run {run}")

        def shown(doc: Any) -> Any:
            return doc if values else without_values(doc)

        return [{"id": r.id, "device": r.device_uuid, "username": r.username,
                 "created_ms": r.created_ms, "checks": json.loads(r.checks or "null"),
                 **({"report": r.report, "state": shown(json.loads(r.state or "{}"))}
                    if run is not None else {})} for r in rows]

    return api
