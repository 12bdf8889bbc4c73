"""`PATCH /device/v3/{uuid}`: a preloaded device (apps.json with `pinDevice`) pins itself to
the release it was preloaded with, as balena's supervisor does once it is provisioned."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request

from edgefleet.server import tables as t
from edgefleet.server.access import require_device, unauthorized
from edgefleet.server.device_schemas import PinBody, PinReply
from edgefleet.server.keys import bearer
from edgefleet.server.state import ServerState


def router(*, state: ServerState) -> APIRouter:
    """The device's own pin route, bound to one process's state."""
    api = APIRouter(tags=["device"])

    @api.patch("/device/v3/{uuid}", response_model=PinReply, responses={
        400: {}, 401: {}, 403: {}, 404: {"description": "no such release in the device's fleet"},
        409: {"description": "the release did not succeed"}})
    def pin_self(uuid: str, body: PinBody, request: Request) -> PinReply:
        """Pin this device (device key of `uuid` only) to a successful release of its own
        fleet, given by full commit. Unpinning is for users (`PATCH /api/v1/devices/...`)."""
        key = bearer(request.headers.get("authorization"))
        principal = require_device(state.principal_sync(key) if key else None, uuid=uuid)
        commit = body.pinned_release
        with state.db.writing() as s:
            device = s.get(t.Device, principal.device_id)
            if device is None:
                raise unauthorized("this device no longer exists")
            release = s.execute(sa.select(t.Release).where(
                t.Release.fleet_id == device.fleet_id, t.Release.commit == commit)).scalar()
            if release is None:
                raise HTTPException(404, f"this device's fleet has no release {commit}")
            if release.status != "success":
                raise HTTPException(409, f"release {commit} is {release.status}, not runnable")
            if device.pinned_release_id != release.id:
                device.pinned_release_id = release.id
                state.db.bump_generation(s)
        state.refresh_generation()
        return PinReply(uuid=uuid, pinned_release=commit)

    return api
