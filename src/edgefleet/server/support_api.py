"""Support grants (`/api/v1/support/grants`) and device notes (`/api/v1/devices/{d}/notes`)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from sqlalchemy.orm import Session

from edgefleet.model.timeutil import now_ms
from edgefleet.server import audit
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.authz import Access, allow
from edgefleet.server.org_schemas import MAX_ID, GrantCreate, GrantOut, NoteCreate, NoteOut
from edgefleet.server.orgs import ERRORS
from edgefleet.server.state import ServerState


def grant_out(s: Session, g: o.SupportGrant, now: int) -> GrantOut:
    fleet = s.get(t.Fleet, g.fleet_id)
    device = s.get(t.Device, g.device_id) if g.device_id else None
    return GrantOut(id=g.id, organization=audit.org_handle(s, g.organization_id),
                    fleet=fleet.name if fleet else "", device=device.uuid if device else None,
                    allow_reboot=g.allow_reboot, created_by=g.created_by,
                    created_ms=g.created_ms, expires_ms=g.expires_ms, revoked_ms=g.revoked_ms,
                    active=g.revoked_ms is None and g.expires_ms > now)


def create_grant(s: Session, *, actor: str, fleet: t.Fleet, device: t.Device | None,
                 duration_s: int, allow_reboot: bool) -> o.SupportGrant:
    """A support grant on `device` (or all of `fleet`) for `duration_s` seconds, recorded in
    the audit trail: the one way grants are made (user API, CLI and dashboard). The caller
    has checked `support.grant` on the fleet."""
    assert fleet.organization_id is not None
    now = now_ms()
    g = o.SupportGrant(organization_id=fleet.organization_id, fleet_id=fleet.id,
                       device_id=device.id if device else None, allow_reboot=allow_reboot,
                       created_by=actor, created_ms=now, expires_ms=now + duration_s * 1000)
    s.add(g)
    s.flush()
    audit.record(s, actor=actor, action="support.grant", fleet=fleet, device=device,
                 target=f"grant {g.id}",
                 detail={"duration_s": duration_s, "allow_reboot": allow_reboot})
    return g


def end_grant(s: Session, *, actor: str, grant: o.SupportGrant, fleet: t.Fleet) -> None:
    """Revoke `grant` now (support agents lose access at once), recorded in the audit trail:
    the one way grants end early. The caller has checked `support.grant` on the fleet."""
    if grant.revoked_ms is None:
        grant.revoked_ms = now_ms()
    audit.record(s, actor=actor, action="support.revoke", fleet=fleet,
                 target=f"grant {grant.id}")


def router(*, state: ServerState) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["support"], responses=ERRORS)  # type: ignore[arg-type]
    db = state.db

    @api.post("/support/grants", status_code=201, response_model=GrantOut,
              responses={400: {}})
    def grant(body: GrantCreate, a: Access = Depends(allow(state, "support.grant"))
              ) -> GrantOut:
        """Give support agents access to a device, or to a fleet and all its devices, for
        `duration_s` seconds; reboot only with `allow_reboot`."""
        if (body.fleet is None) == (body.device is None):
            raise HTTPException(400, "name either a fleet or a device to grant support on")
        with db.session() as s:
            device = a.device(s, body.device) if body.device else None
            fleet = (s.get(t.Fleet, device.fleet_id) if device
                     else a.fleet(s, body.fleet or ""))
            assert fleet is not None
            g = create_grant(s, actor=a.user.username, fleet=fleet, device=device,
                             duration_s=body.duration_s, allow_reboot=body.allow_reboot)
            return grant_out(s, g, g.created_ms)

    @api.get("/support/grants", response_model=list[GrantOut])
    def list_grants(include_ended: bool = Query(False, alias="all"),
                    a: Access = Depends(allow(state, "support.read"))) -> list[GrantOut]:
        """Grants on the fleets you may see (a support agent: the live grants given to
        support); ended ones too with `all=true`."""
        now = now_ms()
        with db.session() as s:
            rights = a.rights(s)
            q = sa.select(o.SupportGrant, t.Fleet).join(
                t.Fleet, t.Fleet.id == o.SupportGrant.fleet_id).where(
                rights.candidate_fleets())
            if not include_ended:
                q = q.where(o.SupportGrant.revoked_ms.is_(None),
                            o.SupportGrant.expires_ms > now)
            rows = s.execute(q.order_by(o.SupportGrant.id)).all()
            return [grant_out(s, g, now) for g, f in rows
                    if rights.check(f, g.device_id, a.permission)]

    @api.delete("/support/grants/{grant_id}", status_code=204)
    def revoke(grant_id: int = Path(ge=1, le=MAX_ID), *,
               a: Access = Depends(allow(state, "support.grant"))) -> None:
        """End a grant now: support agents lose access at once."""
        with db.session() as s:
            g = s.get(o.SupportGrant, grant_id)
            fleet = s.get(t.Fleet, g.fleet_id) if g is not None else None
            if g is None or fleet is None:
                raise HTTPException(404, f"no grant {grant_id}; see `edgefleet support list`")
            a.fleet(s, fleet.uuid)
            end_grant(s, actor=a.user.username, grant=g, fleet=fleet)

    @api.post("/devices/{device}/notes", status_code=201, response_model=NoteOut)
    def add_note(device: str, body: NoteCreate, a: Access = Depends(allow(state, "device.note"))
                 ) -> NoteOut:
        """Add to the device's running log of what was done and found."""
        with db.session() as s:
            d = a.device(s, device)
            note = t.DeviceNote(device_id=d.id, username=a.user.username,
                                created_ms=now_ms(), text=body.text)
            s.add(note)
            s.flush()
            audit.record(s, actor=a.user.username, action="device.note", device=d,
                         target=f"note {note.id}")
            return NoteOut(id=note.id, author=note.username, ts_ms=note.created_ms,
                           text=note.text)

    @api.get("/devices/{device}/notes", response_model=list[NoteOut])
    def list_notes(device: str, a: Access = Depends(allow(state, "device.read"))
                   ) -> list[NoteOut]:
        """The device's notes, oldest first."""
        with db.session() as s:
            d = a.device(s, device)
            rows = s.execute(sa.select(t.DeviceNote).where(t.DeviceNote.device_id == d.id)
                             .order_by(t.DeviceNote.id)).scalars()
            return [NoteOut(id=n.id, author=n.username, ts_ms=n.created_ms, text=n.text)
                    for n in rows]

    return api
