"""The device page: summary, services, live logs (SSE from the server's log store), variables
with their sources, configuration, pinning and notes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from edgefleet.server import guard, roles
from edgefleet.server import logs as logstore
from edgefleet.server import tables as t
from edgefleet.server.state import ServerState
from edgefleet.server.target import release_for, variables
from edgefleet.server.views import device_out
from edgefleet.server.web import actiontext, auth, supporttext, varsview
from edgefleet.server.web.auth import WebUser
from edgefleet.server.web.pages import UserDep
from edgefleet.server.web.permissions import (
    ROLE_PERMISSION,
    Permission,
    actions_allowed,
    allowed,
    can,
)
from edgefleet.server.web.render import SECURITY_HEADERS, render

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
INITIAL_LINES = 200
KEEPALIVE_S = 15.0
RECHECK_S = 2.0
"""Without a wake-up, the store is read again this often (lines may arrive at another
process)."""
MAX_NOTE = 4000
ACCESS_RECHECK_S = 5.0
"""An open live-log page re-checks the user's access this often (a support grant's end
ends it); each check is a few queries, so not every second as for a shell (bench/dashboard.py
measured about 0.5% of a core per page at 1 s)."""


def device_for(s: Session, user: WebUser, uuid: str,
               permission: Permission) -> tuple[t.Device, t.Fleet]:
    """A device (by full uuid) the user may do `permission` on; 404 if they may not see it."""
    device = s.execute(sa.select(t.Device).where(t.Device.uuid == uuid)).scalar()
    fleet = s.get(t.Fleet, device.fleet_id) if device is not None else None
    if device is None or fleet is None or not allowed(user.principal, Permission.VIEW,
                                                      fleet, device.id):
        raise HTTPException(404, f"no device {uuid!r}")
    if not allowed(user.principal, permission, fleet, device.id):
        raise HTTPException(403, f"you may not do {permission.value} on this device")
    return device, fleet


def service_names(s: Session, fleet_id: int) -> dict[int, str]:
    return dict(s.execute(sa.select(t.Service.id, t.Service.name).where(
        t.Service.fleet_id == fleet_id)).all())


def router(*, state: ServerState, current: UserDep) -> APIRouter:
    api = APIRouter(prefix="/ui/devices", include_in_schema=False)
    db = state.db

    def summary(s: Session, device: t.Device, fleet: t.Fleet) -> dict[str, Any]:
        view = device_out(s, device=device, settings=state.settings,
                          last_seen_ms=state.seen(device.id, device.last_seen_ms))
        target = next((r for r in view.releases if r.commit == view.target_release), None)
        services = target.services if target else {}
        names = sorted(set(service_names(s, fleet.id).values()) | set(services))
        return {"view": view, "services": [(n, services.get(n, {})) for n in names]}

    @api.get("/{uuid}", response_class=HTMLResponse)
    def device_page(request: Request, uuid: str, user: WebUser = Depends(current)
                    ) -> Response:
        with db.session() as s:
            device, fleet = device_for(s, user, uuid, Permission.VIEW)
            perms = can(user.principal, fleet, device.id)
            info = summary(s, device, fleet)
            names = [n for n, _ in info["services"]]
            rows = variables(s, fleet_id=fleet.id, device_id=device.id)
            env = varsview.effective_env(rows, services=names) \
                if perms["VARIABLES_READ"] else []
            config = varsview.effective_config(rows) if perms["VARIABLES_READ"] else []
            releases = list(s.execute(sa.select(t.Release).where(
                t.Release.fleet_id == fleet.id, t.Release.status == "success")
                .order_by(t.Release.id.desc()).limit(20)).scalars())
            pinned = s.get(t.Release, device.pinned_release_id) \
                if device.pinned_release_id else None
            notes = list(s.execute(sa.select(t.DeviceNote).where(
                t.DeviceNote.device_id == device.id).order_by(t.DeviceNote.id.desc())
                .limit(100)).scalars())
            fleet_release = release_for(s, fleet=fleet)
            log_services = service_names(s, fleet.id)
            grants = supporttext.active(s, fleet=fleet, device_id=device.id,
                                        now=auth.now_ms()) if perms["SUPPORT_READ"] else []
            may, as_support = actions_allowed(user.principal, fleet, device.id)
        return render(request, "device.html", user=user, device=device, fleet=fleet,
                      grants=grants, durations=supporttext.DURATIONS, grant_device=device,
                      may=may, may_any=any(may.values()), as_support=as_support,
                      may_device=any(may[a] for a in actiontext.DEVICE_WIDE),
                      stopping=roles.STOPPING_ACTIONS,
                      can=perms, env=env, config=config, releases=releases, pinned=pinned,
                      notes=notes, fleet_release=fleet_release, log_services=log_services,
                      stops=actiontext.STOPS, device_actions=actiontext.DEVICE_WIDE,
                      service_actions=actiontext.SERVICE_ACTIONS, confirm=actiontext.CONFIRM,
                      **info)

    @api.get("/{uuid}/summary", response_class=HTMLResponse)
    def summary_part(request: Request, uuid: str, user: WebUser = Depends(current)
                     ) -> Response:
        """The summary and services (htmx refreshes them every few seconds)."""
        with db.session() as s:
            device, fleet = device_for(s, user, uuid, Permission.VIEW)
            info = summary(s, device, fleet)
            perms = can(user.principal, fleet, device.id)
        return render(request, "device_summary.html", user=user, device=device,
                      fleet=fleet, can=perms, **info)

    def read_lines(device_id: int, after: int, count: int | None,
                   service: int | None) -> list[dict[str, Any]]:
        with db.session() as s:
            fleet_id = s.execute(sa.select(t.Device.fleet_id).where(
                t.Device.id == device_id)).scalar()
            names = service_names(s, fleet_id or 0)
            lines = logstore.read(s, device_id=device_id, after_id=after, count=count,
                                  service_id=service)
            return [{"id": ln.id, **logstore.to_wire(ln, services=names)} for ln in lines]

    @api.get("/{uuid}/logs/events")
    async def log_events(request: Request, uuid: str,
                         service: int | None = Query(None, ge=0, le=2**31),
                         user: WebUser = Depends(current)) -> Response:
        """Server-sent events: the last lines, then each new line as it is stored."""
        def find() -> int:
            with db.session() as s:
                return device_for(s, user, uuid, Permission.LOGS)[0].id
        device_id = await run_in_threadpool(find)

        def still_allowed() -> bool:
            return guard.holds(db, user=user.principal, device_id=device_id,
                               permissions=(ROLE_PERMISSION[Permission.LOGS],))

        async def events() -> AsyncIterator[bytes]:
            lines = await run_in_threadpool(read_lines, device_id, 0, INITIAL_LINES, service)
            last = lines[-1]["id"] if lines else 0
            idle = 0.0
            recheck_at = time.monotonic() + ACCESS_RECHECK_S
            yield b"retry: 2000\n\n"
            while True:
                for line in lines:
                    yield f"id: {line['id']}\ndata: {json.dumps(line)}\n\n".encode()
                    last = line["id"]
                event = state.log_event(device_id)
                try:
                    await asyncio.wait_for(event.wait(), timeout=RECHECK_S)
                except TimeoutError:  # lines stored by another server process wake no event
                    idle += RECHECK_S
                    if idle >= KEEPALIVE_S:
                        idle = 0.0
                        yield b": keepalive\n\n"
                if await request.is_disconnected():
                    return
                if time.monotonic() >= recheck_at:  # a support grant's end ends the stream
                    if not await run_in_threadpool(still_allowed):
                        yield b"event: ended\ndata: access to this device ended\n\n"
                        return
                    recheck_at = time.monotonic() + ACCESS_RECHECK_S
                lines = await run_in_threadpool(read_lines, device_id, last, None, service)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store",
                                          "x-accel-buffering": "no"})

    @api.get("/{uuid}/logs.txt")
    def download_logs(uuid: str, service: int | None = Query(None, ge=0, le=2**31),
                      user: WebUser = Depends(current)) -> Response:
        with db.session() as s:
            device, _fleet = device_for(s, user, uuid, Permission.LOGS)
        lines = read_lines(device.id, 0, 100_000, service)
        from edgefleet.server.web.render import when
        text = "".join(f"{when(ln['timestamp'])} [{ln.get('serviceName') or ('system' if ln['isSystem'] else '?')}] {ln['message']}\n"  # noqa: E501
                       for ln in lines)
        return PlainTextResponse(text, headers={
            "content-disposition": f'attachment; filename="{device.uuid[:7]}-logs.txt"'})

    @api.post("/{uuid}/variables", response_class=HTMLResponse)
    def set_variable(request: Request, uuid: str,
                     name: str = Form(..., max_length=255, pattern=NAME),
                     value: str = Form("", max_length=100_000),
                     kind: str = Form("env", pattern="^(env|config)$"),
                     level: str = Form("device", pattern="^(device|fleet)$"),
                     service: str = Form("", max_length=255),
                     user: WebUser = Depends(current)) -> Response:
        perm = Permission.VARIABLES_WRITE if kind == "env" else Permission.CONFIG_WRITE
        if kind == "config" and service:
            raise HTTPException(400, "configuration variables have no service level")
        with db.session() as s:
            device, fleet = device_for(s, user, uuid, perm)
            dev_id = device.id if level == "device" else None
            row = s.execute(sa.select(t.Variable).where(
                t.Variable.kind == kind, t.Variable.fleet_id == fleet.id,
                t.Variable.device_id == dev_id if dev_id else t.Variable.device_id.is_(None),
                t.Variable.service == service, t.Variable.name == name)).scalar()
            if row is None:
                s.add(t.Variable(kind=kind, fleet_id=fleet.id, device_id=dev_id,
                                 service=service, name=name, value=value))
            else:
                row.value = value
            db.bump_generation(s)
        state.refresh_generation()
        return redirect_back(uuid, "variables" if kind == "env" else "configuration")

    @api.post("/{uuid}/variables/{variable_id}/delete", response_class=HTMLResponse)
    def delete_variable(uuid: str, variable_id: int, user: WebUser = Depends(current)
                        ) -> Response:
        with db.session() as s:
            device, fleet = device_for(s, user, uuid, Permission.VIEW)
            var = s.get(t.Variable, variable_id)
            if var is None or var.fleet_id != fleet.id or var.device_id not in (None,
                                                                                 device.id):
                raise HTTPException(404, "no such variable on this device or its fleet")
            device_for(s, user, uuid, Permission.VARIABLES_WRITE if var.kind == "env"
                       else Permission.CONFIG_WRITE)
            s.delete(var)
            db.bump_generation(s)
        state.refresh_generation()
        return redirect_back(uuid, "variables")

    @api.post("/{uuid}/pin", response_class=HTMLResponse)
    def pin(uuid: str, release: str = Form("", max_length=64),
            user: WebUser = Depends(current)) -> Response:
        with db.session() as s:
            device, fleet = device_for(s, user, uuid, Permission.PIN)
            if release in ("", "latest"):
                device.pinned_release_id = None
            else:
                rel = s.execute(sa.select(t.Release).where(
                    t.Release.fleet_id == fleet.id, t.Release.commit == release,
                    t.Release.status == "success")).scalar()
                if rel is None:
                    raise HTTPException(400, f"no successful release {release!r} in "
                                             f"fleet {fleet.name!r}")
                device.pinned_release_id = rel.id
            db.bump_generation(s)
        state.refresh_generation()
        return redirect_back(uuid, "pinning")

    @api.post("/{uuid}/notes", response_class=HTMLResponse)
    def add_note(uuid: str, text: str = Form(..., min_length=1, max_length=MAX_NOTE),
                 user: WebUser = Depends(current)) -> Response:
        with db.session() as s:
            device, _fleet = device_for(s, user, uuid, Permission.NOTES)
            s.add(t.DeviceNote(device_id=device.id, username=user.principal.username,
                               text=text.strip(), created_ms=auth.now_ms()))
        return redirect_back(uuid, "notes")

    return api


def redirect_back(uuid: str, section: str) -> Response:
    return Response(status_code=303, headers={"location": f"/ui/devices/{uuid}#{section}",
                                              **SECURITY_HEADERS})
