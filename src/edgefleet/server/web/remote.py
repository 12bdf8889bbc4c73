"""The device page's remote parts, over the tunnel: the Diagnostics tab (run, store, read
earlier runs even when the device is offline), actions with confirmation, and the web
terminal (xterm.js in the page, a websocket to a PTY on the host or in a service, audited)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, WebSocket
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from edgefleet.server import action_rules, guard
from edgefleet.server import tables as t
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel import audit
from edgefleet.server.tunnel.action_routes import without_values
from edgefleet.server.tunnel.actions import ACTIONS, Target, audited_call, target_for
from edgefleet.server.tunnel.forward import FORWARDED, HostGone, forward_websocket, holder
from edgefleet.server.tunnel.hub import NotConnected, TunnelHub
from edgefleet.server.web import auth, diagview
from edgefleet.server.web.auth import SignInRequired, WebUser
from edgefleet.server.web.device import device_for, redirect_back, service_names
from edgefleet.server.web.pages import UserDep
from edgefleet.server.web.permissions import ROLE_PERMISSION, Permission, can
from edgefleet.server.web.render import render
from edgefleet.tunnel.mux import StreamRefused
from edgefleet.tunnel.stream import StreamReset


def hub_of(request: Request | WebSocket) -> TunnelHub:
    hub = getattr(request.app.state, "tunnel", None)
    if hub is None:
        raise HTTPException(503, "this server runs no tunnel")
    return hub  # type: ignore[no-any-return]


def router(*, state: ServerState, current: UserDep) -> APIRouter:
    api = APIRouter(prefix="/ui/devices", include_in_schema=False)
    db = state.db

    def target_of(user: WebUser, uuid: str, permission: Permission) -> Target:
        with db.session() as s:
            d, _fleet = device_for(s, user, uuid, permission)
            return target_for(d)

    async def elsewhere(request: Request, user: WebUser, target: Target,
                        form: dict[str, str]) -> Response | None:
        """With several server processes: the answer of the process holding the device's
        tunnel (the same session and CSRF token are good there), or None to do it here."""
        hub = hub_of(request)
        host = None if hub.connected(target.device_id) else holder(
            tunnel_host=target.tunnel_host, own_url=state.settings.own_url,
            headers=request.headers)
        if host is None:
            return None
        async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0)) as http:
            r = await http.post(host + request.url.path, data={**form, "csrf": user.csrf},
                                headers={FORWARDED: "1", auth.CSRF_HEADER: user.csrf,
                                         "cookie": request.headers.get("cookie", "")})
        return Response(r.content, status_code=r.status_code, headers={
            k: r.headers[k] for k in ("location", "content-type") if k in r.headers})

    async def audited(hub: TunnelHub, user: WebUser, target: Target, kind: str, what: str,
                      method: str, path: str, body: dict[str, Any] | None) -> Any:
        return await audited_call(state, hub, user=user.principal, target=target, kind=kind,
                                  what=what, method=method, path=path, body=body,
                                  source="dashboard")

    # --- diagnostics -----------------------------------------------------------------------
    @api.get("/{uuid}/diagnostics", response_class=HTMLResponse)
    def diagnostics_page(request: Request, uuid: str, run: int | None = Query(None, ge=1),
                         user: WebUser = Depends(current)) -> Response:
        with db.session() as s:
            device, fleet = device_for(s, user, uuid, Permission.DIAGNOSTICS)
            runs = list(s.execute(sa.select(
                t.DeviceDiagnostics.id, t.DeviceDiagnostics.created_ms,
                t.DeviceDiagnostics.username, t.DeviceDiagnostics.checks).where(
                t.DeviceDiagnostics.device_uuid == device.uuid)
                .order_by(t.DeviceDiagnostics.id.desc()).limit(50)).all())
            chosen = None
            if runs:
                want = run or runs[0][0]
                chosen = s.execute(sa.select(t.DeviceDiagnostics).where(
                    t.DeviceDiagnostics.device_uuid == device.uuid,
                    t.DeviceDiagnostics.id == want)).scalar()
                if chosen is None:
                    raise HTTPException(404, f"no diagnostics run {want} of this device")
            perms = can(user.principal, fleet, device.id)
        listed = []
        for run_id, created, who, checks_json in runs:
            rows, _ = diagview.check_rows(json.loads(checks_json or "null"))
            listed.append({"id": run_id, "created_ms": created, "username": who,
                           "failed": sum(1 for r in rows if not r.success)})
        checks, error = diagview.check_rows(json.loads(chosen.checks or "null")) \
            if chosen else ([], "")
        stored = json.loads(chosen.state or "{}") if chosen else {}
        if not perms["VARIABLES_READ"]:  # support agents: no variable or config values
            stored = without_values(stored)
        return render(request, "diagnostics.html", user=user, device=device, fleet=fleet,
                      can=perms, runs=listed, run=chosen, checks=checks, checks_error=error,
                      state_rows=diagview.state_rows(stored), stored_state=stored,
                      connected=_connected(request, device.id))

    def _connected(request: Request, device_id: int) -> bool:
        hub = getattr(request.app.state, "tunnel", None)
        return bool(hub is not None and hub.connected(device_id))

    @api.post("/{uuid}/diagnose", response_class=HTMLResponse)
    async def diagnose(request: Request, uuid: str, user: WebUser = Depends(current)
                       ) -> Response:
        hub = hub_of(request)
        target = await run_in_threadpool(target_of, user, uuid, Permission.DIAGNOSTICS)
        if (answer := await elsewhere(request, user, target, {})) is not None:
            return answer
        parts: dict[str, Any] = {}
        for name, path in (("checks", "/v2/diagnostics/checks"),
                           ("report", "/v2/diagnostics/report"),
                           ("status", "/v2/state/status"),
                           ("current", "/v2/applications/state")):
            reply = await audited(hub, user, target, "diagnostics", name, "GET", path, None)
            parts[name] = reply.json() if reply.status < 400 else {
                "error": f"HTTP {reply.status}", "body": reply.json()}
        server_target = await state.target(target.device_id, target.app_id)
        parts["target"] = json.loads(server_target.body) if server_target else None
        report = parts.pop("report")

        def store() -> int:
            with db.writing() as s:
                row = t.DeviceDiagnostics(
                    device_uuid=target.uuid, username=user.principal.username,
                    created_ms=auth.now_ms(), checks=json.dumps(parts["checks"]),
                    report=report if isinstance(report, str) else json.dumps(report),
                    state=json.dumps({k: parts[k] for k in ("status", "current", "target")}))
                s.add(row)
                s.flush()
                return int(row.id)

        run_id = await run_in_threadpool(store)
        return Response(status_code=303, headers={
            "location": f"/ui/devices/{uuid}/diagnostics?run={run_id}"})

    # --- actions ---------------------------------------------------------------------------
    @api.post("/{uuid}/actions/{action}", response_class=HTMLResponse)
    async def action(request: Request, uuid: str, action: str,
                     service: str = Form("", max_length=255),
                     confirm: bool = Form(False), note: str = Form("", max_length=2000),
                     user: WebUser = Depends(current)) -> Response:
        """The action on the terms of the user API (`action_rules.authorize`: the action's
        own permission, a confirmation for what stops something, a support agent's note)."""
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}")
        hub = hub_of(request)
        target = await run_in_threadpool(target_of, user, uuid, Permission.VIEW)

        def terms() -> None:
            with db.session() as s:
                device = s.get(t.Device, target.device_id)
                assert device is not None
                action_rules.authorize(db, s, user=user.principal, device=device,
                                       action=action, confirmed=confirm, note=note or None)

        await run_in_threadpool(terms)
        form = {"service": service, "confirm": "true" if confirm else "false", "note": note}
        if (answer := await elsewhere(request, user, target, form)) is not None:
            return answer
        template, needs_service = ACTIONS[action]
        if needs_service and not service:
            raise HTTPException(400, f"{action} needs a service")
        payload: dict[str, Any] = {"appId": target.app_id}
        if service:
            payload["serviceName"] = service
        reply = await audited(hub, user, target, "action",
                              action + (f" {service}" if service else ""), "POST",
                              template.format(app=target.app_id), payload)
        if reply.status >= 400:
            raise HTTPException(502, f"the device refused {action}: HTTP {reply.status}")
        return redirect_back(uuid, "actions")

    # --- audit -----------------------------------------------------------------------------
    @api.get("/-/audit", response_class=HTMLResponse)
    def audit_page(request: Request, device: str = Query("", max_length=64),
                   kind: str = Query("", max_length=16), actor: str = Query("", max_length=64),
                   user: WebUser = Depends(current)) -> Response:
        """Remote sessions, actions and diagnostics runs, newest first, filterable."""
        uuids = None
        if device:
            with db.session() as s:
                uuids = [device_for(s, user, device, Permission.VIEW)[0].uuid]
        rows = [r for r in audit.sessions(db, user=user.principal, device_uuids=uuids,
                                          limit=1000)
                if (not kind or r.kind == kind) and (not actor or r.username == actor)][:300]
        return render(request, "audit.html", user=user, rows=rows, device=device, kind=kind,
                      actor=actor, kinds=("shell", "command", "tcp", "action", "diagnostics"))

    # --- terminal --------------------------------------------------------------------------
    @api.get("/{uuid}/terminal", response_class=HTMLResponse)
    def terminal_page(request: Request, uuid: str, service: str = Query("", max_length=255),
                      user: WebUser = Depends(current)) -> Response:
        with db.session() as s:
            device, fleet = device_for(s, user, uuid, Permission.TERMINAL)
            names = sorted(service_names(s, fleet.id).values())
            perms = can(user.principal, fleet, device.id)
        return render(request, "terminal.html", user=user, device=device, fleet=fleet,
                      can=perms, services=names, service=service,
                      connected=_connected(request, device.id))

    @api.websocket("/{uuid}/terminal/ws")
    async def terminal_ws(websocket: WebSocket, uuid: str) -> None:
        """Browser <-> PTY: binary frames are keystrokes and output; a text frame
        `{"resize": [rows, cols]}` resizes; `{"exit": code}` ends."""
        origin = websocket.headers.get("origin", "")
        host = websocket.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            await websocket.close(code=4403, reason="cross-origin terminal refused")
            return
        try:
            user = await auth.cookie_user(db, websocket)
        except SignInRequired:
            await websocket.close(code=4401, reason="sign in first")
            return
        sent = websocket.query_params.get("csrf", "")
        if not hmac.compare_digest(sent, user.csrf):
            await websocket.close(code=4403, reason="missing or wrong CSRF token")
            return
        service = websocket.query_params.get("service") or None
        rows = _bounded(websocket.query_params.get("rows"), 24)
        cols = _bounded(websocket.query_params.get("cols"), 80)

        def find() -> t.Device:
            with db.session() as s:
                return device_for(s, user, uuid, Permission.TERMINAL)[0]

        try:
            device = await run_in_threadpool(find)
        except HTTPException as exc:
            await websocket.close(code=4000 + exc.status_code, reason=str(exc.detail)[:120])
            return
        hub = getattr(websocket.app.state, "tunnel", None)
        await websocket.accept()
        elsewhere = None if hub is not None and hub.connected(device.id) else holder(
            tunnel_host=device.tunnel_host, own_url=state.settings.own_url,
            headers=websocket.headers)
        if elsewhere is not None:  # several processes: the one holding the tunnel serves it
            try:
                await forward_websocket(websocket, host=elsewhere)
                return
            except HostGone:  # that process died: the device is "not connected" here
                if hub is not None:
                    await hub.forget_host(elsewhere)
        session = await run_in_threadpool(lambda: audit.begin(
            db, user=user.principal, device_uuid=device.uuid, kind="shell",
            target=service or "host", command="(dashboard terminal)"))
        result, up, down = "closed", 0, 0
        try:
            if hub is None:
                raise NotConnected("this server runs no tunnel")
            stream = await hub.open(device_id=device.id, request={
                "kind": "shell", "service": service, "command": None, "rows": rows,
                "cols": cols, "term": "xterm-256color"})
        except (NotConnected, StreamRefused) as exc:
            result = f"refused: {exc}"
            await websocket.send_text(json.dumps({"error": f"device {uuid[:7]}: {exc}"}))
            await websocket.close()
            await run_in_threadpool(lambda: audit.end(db, session_id=session, bytes_up=0,
                                                      bytes_down=0, result=result))
            return

        async def to_device() -> None:
            nonlocal up
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes"):
                    up += len(message["bytes"])
                    await stream.write(message["bytes"])
                elif message.get("text"):
                    doc = json.loads(message["text"])
                    if "resize" in doc:
                        r, c = doc["resize"]
                        await stream.resize(rows=_bounded(r, 24), cols=_bounded(c, 80))
                    elif "input" in doc:
                        data = str(doc["input"]).encode()
                        up += len(data)
                        await stream.write(data)

        async def to_browser() -> str:
            nonlocal down
            while True:
                chunk = await stream.read()
                if chunk.kind in ("data", "stderr"):
                    down += len(chunk.data)
                    await websocket.send_bytes(bytes(chunk.data))
                elif chunk.kind == "exit":
                    await websocket.send_text(json.dumps({"exit": chunk.code}))
                    return f"exit {chunk.code}"
                elif chunk.kind == "eof":
                    return "closed"

        reader = asyncio.create_task(to_device())
        writer = asyncio.create_task(to_browser())
        watcher = asyncio.create_task(guard.until_revoked(  # a support grant's end cuts it
            db, user=user.principal, device_id=device.id,
            permissions=(ROLE_PERMISSION[Permission.TERMINAL],)))
        try:
            done, _ = await asyncio.wait({reader, writer, watcher},
                                         return_when=asyncio.FIRST_COMPLETED)
            if watcher in done:
                result = f"cut: {watcher.result()}"
                await websocket.send_text(json.dumps({"error": watcher.result()}))
            elif writer in done and not writer.cancelled():
                result = writer.result()
            else:
                result = "closed by the browser"
        except (StreamReset, WebSocketDisconnect) as exc:
            result = f"reset: {exc}"
        finally:
            for task in (reader, writer, watcher):
                task.cancel()
            for task in (reader, writer, watcher):
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                await stream.reset("terminal closed")
            with contextlib.suppress(Exception):
                await websocket.close()
            final = result
            await asyncio.shield(asyncio.get_running_loop().run_in_executor(
                None, lambda: audit.end(db, session_id=session, bytes_up=up,
                                        bytes_down=down, result=final)))

    return api


def _bounded(value: Any, default: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return default
    return min(max(n, 1), 1000)

