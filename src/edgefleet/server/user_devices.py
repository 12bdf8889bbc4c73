"""The user API for devices (list, show, pin, rename, remove) and variables (env, config)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query

from edgefleet.server import audit
from edgefleet.server import tables as t
from edgefleet.server.authz import Access, allow
from edgefleet.server.state import ServerState
from edgefleet.server.user_api import ERRORS
from edgefleet.server.user_schemas import DeviceOut, DeviceUpdate, VariableOut, VariableSet
from edgefleet.server.views import device_out, device_outs, resolve_release

UNPIN = ("none", "latest")
"""`pinned_release` values that unpin a device."""


def router(*, state: ServerState) -> APIRouter:
    """Routes for devices and variables."""
    api = APIRouter(prefix="/api/v1", tags=["user"], responses=ERRORS)
    db = state.db

    def out(s: sa.orm.Session, device: t.Device) -> DeviceOut:
        return device_out(s, device=device, settings=state.settings,
                          last_seen_ms=state.seen(device.id, device.last_seen_ms))

    @api.get("/devices", response_model=list[DeviceOut], responses={404: {}})
    def list_devices(fleet: str | None = Query(None, max_length=128),
                     limit: int | None = Query(None, ge=0, le=2**31 - 1,
                                               description="At most this many (default all)."),
                     offset: int = Query(0, ge=0, le=2**31 - 1,
                                         description="Skip this many first (by id)."),
                     a: Access = Depends(allow(state, "device.read"))) -> list[DeviceOut]:
        """The devices the user may see by id, of one fleet when `fleet` is given
        (`limit`/`offset` page through them; a fixed number of statements whatever the page
        size)."""
        with db.session() as s:
            q = sa.select(t.Device).join(t.Fleet, t.Fleet.id == t.Device.fleet_id).where(
                a.rights(s).device_condition(a.permission))
            if fleet is not None:
                q = q.where(t.Device.fleet_id == a.fleet(s, fleet).id)
            q = q.order_by(t.Device.id).offset(offset or None).limit(limit)
            return device_outs(s, page=q, settings=state.settings,
                               seen=lambda d: state.seen(d.id, d.last_seen_ms))

    @api.get("/devices/{device}", response_model=DeviceOut, responses={404: {}, 409: {}})
    def show_device(device: str, a: Access = Depends(allow(state, "device.read"))
                    ) -> DeviceOut:
        """One device by uuid, unique uuid prefix (7+ characters) or name."""
        with db.session() as s:
            return out(s, a.device(s, device))

    @api.patch("/devices/{device}", response_model=DeviceOut, responses={404: {}, 409: {}})
    def update_device(device: str, body: DeviceUpdate,
                      a: Access = Depends(allow(state, "device.update"))) -> DeviceOut:
        """Rename a device, pin it to a release, or unpin it (`pinned_release: "none"` or
        `"latest"`: it follows its fleet's target again)."""
        with db.session() as s:
            d = a.device(s, device)
            audit.record(s, actor=a.user.username, action="device.update", device=d,
                         target=d.uuid, detail=body.model_dump(exclude_none=True))
            if body.name is not None:
                d.name = body.name
            if body.pinned_release is not None:
                fleet = s.get(t.Fleet, d.fleet_id)
                assert fleet is not None
                d.pinned_release_id = (None if body.pinned_release in UNPIN else
                                       resolve_release(s, fleet=fleet,
                                                       commit=body.pinned_release).id)
            db.bump_generation(s)
            reply = out(s, d)
        state.refresh_generation()
        return reply

    @api.delete("/devices/{device}", status_code=204, responses={404: {}, 409: {}})
    def delete_device(device: str, a: Access = Depends(allow(state, "device.delete"))) -> None:
        """Remove a device; its key stops working at once."""
        with db.session() as s:
            d = a.device(s, device)
            audit.record(s, actor=a.user.username, action="device.delete", device=d,
                         target=d.name)
            s.execute(sa.delete(t.ApiKey).where(t.ApiKey.device_id == d.id))
            s.execute(sa.delete(t.Variable).where(t.Variable.device_id == d.id))
            s.delete(d)
            db.bump_generation(s, keys=True)
        state.refresh_generation()

    def scope(s: sa.orm.Session, a: Access, fleet: str | None,
              device: str | None) -> tuple[t.Fleet, t.Device | None]:
        if device is not None:
            d = a.device(s, device)
            f = s.get(t.Fleet, d.fleet_id)
            assert f is not None
            if fleet is not None and fleet not in (f.name, f.uuid):
                raise HTTPException(400, f"device {device!r} is not in fleet {fleet!r}")
            return f, d
        if fleet is None:
            raise HTTPException(400, "name a fleet or a device")
        return a.fleet(s, fleet), None

    def var_out(v: t.Variable, fleet: t.Fleet, device: t.Device | None) -> VariableOut:
        level = ("device" if v.device_id is not None else "fleet") + (
            "+service" if v.service else "")
        return VariableOut(id=v.id, kind=v.kind, level=level, fleet=fleet.name,
                           device=device.uuid if device else None, service=v.service or None,
                           name=v.name, value=v.value)

    @api.get("/variables", response_model=list[VariableOut], responses={400: {}, 404: {}})
    def list_variables(fleet: str | None = Query(None, max_length=128),
                       device: str | None = Query(None, max_length=128),
                       kind: str | None = Query(None, pattern="^(env|config)$"),
                       a: Access = Depends(allow(state, "variable.read"))
                       ) -> list[VariableOut]:
        """Variables of a fleet (fleet and fleet+service levels) or of a device (device and
        device+service levels)."""
        with db.session() as s:
            f, d = scope(s, a, fleet, device)
            q = sa.select(t.Variable).where(
                t.Variable.fleet_id == f.id,
                t.Variable.device_id == d.id if d else t.Variable.device_id.is_(None))
            if kind:
                q = q.where(t.Variable.kind == kind)
            rows = s.execute(q.order_by(t.Variable.kind, t.Variable.service, t.Variable.name))
            return [var_out(v, f, d) for v in rows.scalars()]

    @api.put("/variables", response_model=VariableOut, responses={400: {}, 404: {}})
    def set_variable(body: VariableSet, a: Access = Depends(allow(state, "variable.write"))
                     ) -> VariableOut:
        """Set a variable at the level the body names (fleet or device, with or without a
        service); config variables have no service level."""
        if body.kind == "config" and body.service:
            raise HTTPException(400, "configuration variables apply to the whole device; "
                                     "they have no service level")
        with db.session() as s:
            f, d = scope(s, a, body.fleet, body.device)
            audit.record(s, actor=a.user.username, action="variable.set", fleet=f, device=d,
                         target=f"{body.kind} {body.name}", detail={
                             "service": body.service,
                             "value": audit.variable_value(body.name, body.value)})
            row = s.execute(sa.select(t.Variable).where(
                t.Variable.kind == body.kind, t.Variable.fleet_id == f.id,
                t.Variable.device_id == d.id if d else t.Variable.device_id.is_(None),
                t.Variable.service == (body.service or ""), t.Variable.name == body.name)
            ).scalar()
            if row is None:
                row = t.Variable(kind=body.kind, fleet_id=f.id, device_id=d.id if d else None,
                                 service=body.service or "", name=body.name, value=body.value)
                s.add(row)
            row.value = body.value
            db.bump_generation(s)
            s.flush()
            reply = var_out(row, f, d)
        state.refresh_generation()
        return reply

    @api.delete("/variables", status_code=204, responses={400: {}, 404: {}})
    def delete_variable(name: str = Query(..., max_length=255),
                        fleet: str | None = Query(None, max_length=128),
                        device: str | None = Query(None, max_length=128),
                        service: str | None = Query(None, max_length=255),
                        kind: str = Query("env", pattern="^(env|config)$"),
                        a: Access = Depends(allow(state, "variable.write"))) -> None:
        """Remove a variable from the level named; 404 when it is not set there."""
        with db.session() as s:
            f, d = scope(s, a, fleet, device)
            audit.record(s, actor=a.user.username, action="variable.remove", fleet=f,
                         device=d, target=f"{kind} {name}", detail={"service": service})
            res = s.execute(sa.delete(t.Variable).where(
                t.Variable.kind == kind, t.Variable.fleet_id == f.id,
                t.Variable.device_id == d.id if d else t.Variable.device_id.is_(None),
                t.Variable.service == (service or ""), t.Variable.name == name))
            if not res.rowcount:  # type: ignore[attr-defined]
                raise HTTPException(404, f"{kind} variable {name!r} is not set at that level")
            db.bump_generation(s)
        state.refresh_generation()

    return api
