"""Granting and revoking support access from the dashboard (fleet page: the whole fleet;
device page: that device). The grant goes through a confirmation page that says what support
agents will be able to do and until when; grants are made and ended by the same functions
as the user API's (`support_api.create_grant` / `end_grant`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.state import ServerState
from edgefleet.server.support_api import create_grant, end_grant
from edgefleet.server.web import auth, supporttext
from edgefleet.server.web.auth import WebUser
from edgefleet.server.web.device import device_for
from edgefleet.server.web.pages import UserDep, fleet_for
from edgefleet.server.web.permissions import Permission
from edgefleet.server.web.render import SECURITY_HEADERS, render


def router(*, state: ServerState, current: UserDep) -> APIRouter:
    api = APIRouter(prefix="/ui/support", include_in_schema=False)
    db = state.db

    def scope(s: Session, user: WebUser, fleet: str, device: str
              ) -> tuple[t.Fleet, t.Device | None]:
        """The fleet (and device) a grant names, with `support.grant` checked on it."""
        if bool(fleet) == bool(device):
            raise HTTPException(400, "name either a fleet or a device to grant support on")
        if device:
            d, f = device_for(s, user, device, Permission.SUPPORT_GRANT)
            return f, d
        return fleet_for(s, user, fleet, Permission.SUPPORT_GRANT), None

    def back(fleet: t.Fleet, device: t.Device | None) -> str:
        return (f"/ui/devices/{device.uuid}#support" if device
                else f"/ui/fleets/{fleet.uuid}#support")

    @api.get("/confirm", response_class=HTMLResponse)
    def confirm(request: Request, fleet: str = Query("", max_length=64, pattern="^[0-9a-f]*$"),
                device: str = Query("", max_length=64, pattern="^[0-9a-f]*$"),
                duration_s: int = Query(..., ge=supporttext.MIN_S, le=supporttext.MAX_S),
                allow_reboot: bool = Query(False), user: WebUser = Depends(current)
                ) -> Response:
        """What the grant will let support agents do, and until when; the grant itself is
        the form this page posts."""
        with db.session() as s:
            f, d = scope(s, user, fleet, device)
        return render(request, "support_confirm.html", user=user, fleet=f, device=d,
                      duration_s=duration_s, allow_reboot=allow_reboot,
                      duration=supporttext.duration_text(duration_s),
                      expires_ms=auth.now_ms() + duration_s * 1000,
                      can_do=supporttext.can_do(allow_reboot=allow_reboot),
                      never=supporttext.never(allow_reboot=allow_reboot), back=back(f, d))

    @api.post("/grants", response_class=HTMLResponse)
    def grant(fleet: str = Form("", max_length=64, pattern="^[0-9a-f]*$"),
              device: str = Form("", max_length=64, pattern="^[0-9a-f]*$"),
              duration_s: int = Form(..., ge=supporttext.MIN_S, le=supporttext.MAX_S),
              allow_reboot: bool = Form(False), user: WebUser = Depends(current)
              ) -> Response:
        with db.session() as s:
            f, d = scope(s, user, fleet, device)
            create_grant(s, actor=user.principal.username, fleet=f, device=d,
                         duration_s=duration_s, allow_reboot=allow_reboot)
            where = back(f, d)
        return Response(status_code=303, headers={"location": where, **SECURITY_HEADERS})

    @api.post("/grants/{grant_id}/revoke", response_class=HTMLResponse)
    def revoke(grant_id: int, device: str = Form("", max_length=64, pattern="^[0-9a-f]*$"),
               user: WebUser = Depends(current)) -> Response:
        """End a grant now (from the page of its fleet, or of a device it covers)."""
        with db.session() as s:
            g = s.get(o.SupportGrant, grant_id)
            f = s.get(t.Fleet, g.fleet_id) if g is not None else None
            if g is None or f is None:
                raise HTTPException(404, f"no support grant {grant_id}")
            fleet = fleet_for(s, user, f.uuid, Permission.SUPPORT_GRANT)
            d = device_for(s, user, device, Permission.VIEW)[0] if device else None
            end_grant(s, actor=user.principal.username, grant=g, fleet=fleet)
            where = back(fleet, d)
        return Response(status_code=303, headers={"location": where, **SECURITY_HEADERS})

    return api
