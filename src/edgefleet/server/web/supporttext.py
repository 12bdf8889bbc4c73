"""Support access on the dashboard: what a grant lets support agents do (said in the grant's
confirmation, from `roles.SUPPORT_PERMISSIONS`), the durations offered, and the live grants
a page lists."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.server import org_tables as o
from edgefleet.server import roles
from edgefleet.server import tables as t
from edgefleet.server.rights import live_grants

CAN_DO = {
    "fleet.read": "see the fleet's name and release",
    "device.read": "see the device's status, release and services",
    "device.logs": "read its logs, live",
    "diagnostics.read": "read earlier diagnostics runs",
    "device.diagnose": "run diagnostics (health checks and the report)",
    "device.ssh": "open a terminal on the host or in a service (recorded in the audit trail)",
    "device.tunnel": "open tunnels to the device's ports",
    "service.restart": "restart its services (one, or all at once)",
    "device.note": "add notes",
    "support.read": "see the support grants that cover it",
    roles.GRANT_REBOOT: "reboot the device (with a note saying why)",
}
"""Each permission a grant gives (`roles.SUPPORT_PERMISSIONS`, plus reboot if allowed)."""
NEVER = ("see or change variables and configuration values, push releases, pin, move, "
         "stop or start services, purge or shut down devices, or grant support access")
DURATIONS = ((900, "15 minutes"), (3600, "1 hour"), (7200, "2 hours"), (28800, "8 hours"),
             (86400, "1 day"), (7 * 86400, "7 days"))
MIN_S, MAX_S = 5, 30 * 86400
"""The user API's bounds on a grant's duration (`org_schemas.GrantCreate`)."""


def can_do(*, allow_reboot: bool) -> list[str]:
    """What support agents will be able to do under a grant, in the role table's order."""
    perms = sorted(roles.SUPPORT_PERMISSIONS, key=list(CAN_DO).index)
    if allow_reboot:
        perms.append(roles.GRANT_REBOOT)
    return [CAN_DO[p] for p in perms]


def never(*, allow_reboot: bool) -> str:
    return NEVER if allow_reboot else NEVER.replace("purge or shut down", "reboot, purge or "
                                                    "shut down")


def duration_text(seconds: int) -> str:
    """`15 minutes`, `2 hours`, `1 day`, `90 seconds`."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class GrantRow:
    """A live grant as a page lists it."""

    id: int
    scope: str
    """`whole fleet` or the device's name."""
    device_uuid: str | None
    allow_reboot: bool
    created_by: str
    expires_ms: int


def active(s: Session, *, fleet: t.Fleet, device_id: int | None, now: int) -> list[GrantRow]:
    """Live grants on `fleet` (those covering device `device_id` when given), soonest
    expiry first."""
    q = live_grants(now=now).where(o.SupportGrant.fleet_id == fleet.id)
    if device_id is not None:
        q = q.where(sa.or_(o.SupportGrant.device_id.is_(None),
                           o.SupportGrant.device_id == device_id))
    rows = []
    for g in s.execute(q.order_by(o.SupportGrant.expires_ms, o.SupportGrant.id)).scalars():
        device = s.get(t.Device, g.device_id) if g.device_id else None
        rows.append(GrantRow(id=g.id, scope=device.name if device else "whole fleet",
                             device_uuid=device.uuid if device else None,
                             allow_reboot=g.allow_reboot, created_by=g.created_by,
                             expires_ms=g.expires_ms))
    return rows
