"""Who may write a balena row: the fleet it belongs to, visible to the user, and the
permission of the write being done."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from sqlalchemy.orm import Session

from edgefleet.server import tables as t
from edgefleet.server.balena.odata import ODataError
from edgefleet.server.rights import may

PERMISSION: ContextVar[str] = ContextVar("balena_write_permission", default="fleet.read")
"""The permission of the write being done (set by the route, read by `fleet_for`)."""


def fleet_for(s: Session, fleet_id: Any, user_id: int) -> t.Fleet:
    """The fleet, when the user sees it (404) and may do the write's permission (403)."""
    fleet = s.get(t.Fleet, fleet_id) if isinstance(fleet_id, int) else None
    if fleet is None or not may(s, user_id, fleet, "fleet.read"):
        raise ODataError(f"no application {fleet_id!r}", status=404, code="NotFound")
    if not may(s, user_id, fleet, PERMISSION.get()):
        raise ODataError(f"your role may not {PERMISSION.get()} on {fleet.name!r}",
                         status=403, code="Forbidden")
    return fleet


def device_for(s: Session, device_id: Any, user_id: int) -> t.Device:
    """The device, when its fleet passes `fleet_for`."""
    device = s.get(t.Device, device_id) if isinstance(device_id, int) else None
    if device is None:
        raise ODataError(f"no device {device_id!r}", status=404, code="NotFound")
    fleet_for(s, device.fleet_id, user_id)
    return device
