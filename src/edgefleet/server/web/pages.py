"""Dashboard pages: sign-in, the fleets overview, a fleet with its devices table (filter,
sort, pages, live refresh, bulk pin/move) and a release with its build log."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from edgefleet.server import tables as t
from edgefleet.server.state import ServerState
from edgefleet.server.target import release_for
from edgefleet.server.web import auth, queries, supporttext
from edgefleet.server.web.auth import WebUser
from edgefleet.server.web.permissions import Permission, allowed, can, device_scope, visible_fleets
from edgefleet.server.web.render import render

UserDep = Callable[..., Awaitable[WebUser]]
RECENT_RELEASES = 10


def fleet_for(s: Session, user: WebUser, uuid: str, permission: Permission) -> t.Fleet:
    """A fleet the user may do `permission` on (404 when they may not even see it)."""
    fleet = s.execute(sa.select(t.Fleet).where(t.Fleet.uuid == uuid)).scalar()
    if fleet is None or not allowed(user.principal, Permission.VIEW, fleet):
        raise HTTPException(404, f"no fleet {uuid!r}")
    if not allowed(user.principal, permission, fleet):
        raise HTTPException(403, f"you may not do {permission.value} on this fleet")
    return fleet


def router(*, state: ServerState, current: UserDep) -> APIRouter:
    api = APIRouter(prefix="/ui", include_in_schema=False)
    db = state.db

    @api.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = Query("/ui/", max_length=512)) -> Response:
        token = secrets.token_urlsafe(24)
        response = render(request, "login.html", user=None, next=auth.safe_next(next),
                          login_csrf=token, error="")
        auth.set_cookie(request, response, auth.LOGIN_COOKIE, token, max_age=3600)
        return response

    @api.post("/login", response_class=HTMLResponse)
    async def login(request: Request, username: str = Form(..., max_length=64),
                    password: str = Form(..., max_length=1024),
                    next: str = Form("/ui/", max_length=512),
                    csrf: str = Form("", max_length=128)) -> Response:
        expected = request.cookies.get(auth.LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(expected, csrf):
            raise HTTPException(403, "missing or wrong CSRF token: reload the sign-in page")
        user = await run_in_threadpool(auth.check_password, db, username, password)
        if user is None:
            return render(request, "login.html", user=None, next=auth.safe_next(next),
                          login_csrf=expected, status=401,
                          error="Wrong username or password.")
        token = await run_in_threadpool(auth.open_session, db, user)
        response = RedirectResponse(auth.safe_next(next), status_code=303)
        auth.set_cookie(request, response, auth.COOKIE, token, max_age=auth.SESSION_S)
        response.delete_cookie(auth.LOGIN_COOKIE, path="/ui")
        return response

    @api.post("/logout")
    def logout(request: Request, _user: WebUser = Depends(current)) -> Response:
        auth.close_session(db, request.cookies.get(auth.COOKIE, ""))
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(auth.COOKIE, path="/ui")
        return response

    @api.get("/", response_class=HTMLResponse)
    def fleets(request: Request, user: WebUser = Depends(current)) -> Response:
        now = auth.now_ms()
        with db.session() as s:
            rows = []
            for fleet in s.execute(sa.select(t.Fleet).where(visible_fleets(user.principal))
                                   .order_by(t.Fleet.name)).scalars():
                latest = release_for(s, fleet=fleet)
                counts = queries.status_counts(s, fleet_id=fleet.id, settings=state.settings,
                                               now=now, only=device_scope(user.principal, fleet))
                rows.append({"fleet": fleet, "release": latest, "counts": counts})
        return render(request, "fleets.html", user=user, rows=rows,
                      statuses=queries.STATUSES)

    def table(s: Session, user: WebUser, fleet: t.Fleet, q: str, status: str, sort: str,
              desc: bool, page: int) -> queries.DevicePage:
        return queries.device_page(s, state=state, fleet=fleet, now=auth.now_ms(), q=q,
                                   status=status, sort=sort, desc=desc, page=page,
                                   only=device_scope(user.principal, fleet))

    @api.get("/fleets/{uuid}", response_class=HTMLResponse)
    def fleet_page(request: Request, uuid: str, q: str = Query("", max_length=128),
                   status: str = Query("", max_length=32),
                   sort: str = Query("name", max_length=32), desc: bool = Query(False),
                   page: int = Query(1, ge=1, le=1_000_000),
                   user: WebUser = Depends(current)) -> Response:
        with db.session() as s:
            fleet = fleet_for(s, user, uuid, Permission.VIEW)
            devices = table(s, user, fleet, q, status, sort, desc, page)
            counts = queries.status_counts(s, fleet_id=fleet.id, settings=state.settings,
                                           now=auth.now_ms(),
                                           only=device_scope(user.principal, fleet))
            releases = list(s.execute(sa.select(t.Release).where(
                t.Release.fleet_id == fleet.id).order_by(t.Release.id.desc())
                .limit(RECENT_RELEASES)).scalars())
            current_release = release_for(s, fleet=fleet)
            runnable = [r for r in releases if r.status == "success"]
            others = list(s.execute(sa.select(t.Fleet).where(
                visible_fleets(user.principal), t.Fleet.id != fleet.id,
                t.Fleet.device_type == fleet.device_type)).scalars())
            movable = [f for f in others if allowed(user.principal, Permission.MOVE, f)]
            perms = can(user.principal, fleet)
            grants = supporttext.active(s, fleet=fleet, device_id=None, now=auth.now_ms()) \
                if perms["SUPPORT_READ"] else []
        return render(request, "fleet.html", user=user, fleet=fleet, devices=devices,
                      counts=counts, releases=releases, current=current_release,
                      runnable=runnable, movable=movable, can=perms, grants=grants,
                      durations=supporttext.DURATIONS, grant_device=None,
                      statuses=queries.STATUSES, sorts=queries.SORTS)

    @api.get("/fleets/{uuid}/devices", response_class=HTMLResponse)
    def device_rows(request: Request, uuid: str, q: str = Query("", max_length=128),
                    status: str = Query("", max_length=32),
                    sort: str = Query("name", max_length=32), desc: bool = Query(False),
                    page: int = Query(1, ge=1, le=1_000_000),
                    user: WebUser = Depends(current)) -> Response:
        """The table alone (htmx refreshes it every few seconds, and on filter changes)."""
        with db.session() as s:
            fleet = fleet_for(s, user, uuid, Permission.VIEW)
            devices = table(s, user, fleet, q, status, sort, desc, page)
            perms = can(user.principal, fleet)
        return render(request, "device_table.html", user=user, fleet=fleet, devices=devices,
                      can=perms, sorts=queries.SORTS)

    @api.post("/fleets/{uuid}/bulk", response_class=HTMLResponse)
    async def bulk(request: Request, uuid: str, user: WebUser = Depends(current)) -> Response:
        form = await request.form()
        chosen = [str(v) for v in form.getlist("device")][:10_000]
        action = str(form.get("action") or "")
        return await run_in_threadpool(_bulk, request, user, uuid, chosen, action,
                                       str(form.get("release") or ""),
                                       str(form.get("to_fleet") or ""))

    def _bulk(request: Request, user: WebUser, uuid: str, chosen: list[str], action: str,
              release: str, to_fleet: str) -> Response:
        if not chosen:
            raise HTTPException(400, "select at least one device")
        with db.session() as s:
            if action == "pin":
                fleet = fleet_for(s, user, uuid, Permission.PIN)
                pin_id: int | None = None
                if release not in ("", "latest"):
                    rel = s.execute(sa.select(t.Release).where(
                        t.Release.fleet_id == fleet.id, t.Release.commit == release,
                        t.Release.status == "success")).scalar()
                    if rel is None:
                        raise HTTPException(400, f"fleet {fleet.name!r} has no successful "
                                                 f"release {release!r}")
                    pin_id = rel.id
                done = s.execute(sa.update(t.Device).where(
                    t.Device.fleet_id == fleet.id, t.Device.uuid.in_(chosen))
                    .values(pinned_release_id=pin_id)).rowcount  # type: ignore[attr-defined]
                message = f"{done} device(s) " + (f"pinned to {release[:7]}" if pin_id
                                                  else "follow the fleet's release")
                db.bump_generation(s)
            elif action == "move":
                fleet = fleet_for(s, user, uuid, Permission.MOVE)
                dest = fleet_for(s, user, to_fleet, Permission.MOVE)
                if dest.device_type != fleet.device_type:
                    raise HTTPException(400, f"fleet {dest.name!r} is for {dest.device_type}"
                                             f" devices, these are {fleet.device_type}")
                ids = [i for (i,) in s.execute(sa.select(t.Device.id).where(
                    t.Device.fleet_id == fleet.id, t.Device.uuid.in_(chosen))).all()]
                s.execute(sa.update(t.Device).where(t.Device.id.in_(ids)).values(
                    fleet_id=dest.id, pinned_release_id=None))
                s.execute(sa.update(t.Variable).where(t.Variable.device_id.in_(ids))
                          .values(fleet_id=dest.id))
                message = f"{len(ids)} device(s) moved to {dest.name}"
                db.bump_generation(s, keys=True)
            else:
                raise HTTPException(400, f"unknown bulk action {action!r}: pin or move")
        state.refresh_generation()
        return HTMLResponse(f'<p role="status" class="flash">{auth_escape(message)}</p>')

    @api.get("/releases/{commit}", response_class=HTMLResponse)
    def release_page(request: Request, commit: str, user: WebUser = Depends(current)
                     ) -> Response:
        with db.session() as s:
            rel = s.execute(sa.select(t.Release).where(t.Release.commit == commit)).scalar()
            fleet = s.get(t.Fleet, rel.fleet_id) if rel else None
            if rel is None or fleet is None or not allowed(user.principal, Permission.VIEW,
                                                           fleet):
                raise HTTPException(404, f"no release {commit!r}")
        return render(request, "release.html", user=user, release=rel, fleet=fleet)

    return api


def auth_escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))
