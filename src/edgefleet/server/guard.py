"""Open sessions (ssh, tunnels) last only as long as the access they were opened under: a
watcher re-checks the user's rights on the device every second and says when they are gone
(a support grant expired or revoked, a role removed)."""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from edgefleet.model.timeutil import now_ms
from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.rights import Rights

CHECK_EVERY_S = 1.0


def holds(db: Database, *, user: keys.UserPrincipal, device_id: int,
          permissions: tuple[str, ...]) -> bool:
    """Whether the user still holds one of `permissions` on the device (the token's own
    expiry included)."""
    if user.expired(now_ms()):
        return False
    with db.session() as s:
        device = s.get(t.Device, device_id)
        fleet = s.get(t.Fleet, device.fleet_id) if device is not None else None
        if device is None or fleet is None:
            return False
        rights = Rights.load(s, user)
        return any(rights.check(fleet, device.id, p) for p in permissions)


async def until_revoked(db: Database, *, user: keys.UserPrincipal, device_id: int,
                        permissions: tuple[str, ...], every_s: float = CHECK_EVERY_S) -> str:
    """Return (with a reason) once the user no longer holds any of `permissions` on the
    device; meant to race the session it guards."""
    while True:
        await asyncio.sleep(every_s)
        if not await run_in_threadpool(holds, db, user=user, device_id=device_id,
                                       permissions=permissions):
            return "access to this device ended (support grant expired or revoked, or role removed)"
