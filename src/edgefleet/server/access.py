"""Who may touch what: the checks every endpoint makes before it reads or writes."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy.orm import Session

from edgefleet.server import tables as t
from edgefleet.server.keys import DevicePrincipal, Principal, UserPrincipal
from edgefleet.server.rights import Rights, find_device, find_fleet


def unauthorized(detail: str = "missing or unknown API key") -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def require_user(principal: Principal | None) -> UserPrincipal:
    """The user behind a user token; 401 without a key, 403 for a device/provisioning key."""
    if principal is None:
        raise unauthorized()
    if not isinstance(principal, UserPrincipal):
        raise HTTPException(403, "this endpoint needs a user token")
    return principal


def require_device(principal: Principal | None, *, uuid: str) -> DevicePrincipal:
    """The device behind a device key, which must be the device `uuid`."""
    if principal is None:
        raise unauthorized()
    if not isinstance(principal, DevicePrincipal):
        raise HTTPException(403, "this endpoint needs the device's own API key")
    if principal.uuid != uuid:
        raise HTTPException(403, "a device key reads and writes only its own device")
    return principal


def user_fleet(s: Session, *, user: UserPrincipal, name: str,
               permission: str = "fleet.read") -> t.Fleet:
    """A fleet the user holds `permission` on, by name (or uuid); 404 when the user sees
    none such, 403 when the role does not allow it (routes use `authz.allow` instead)."""
    fleet, ok = find_fleet(s, Rights.load(s, user), name=name, permission=permission)
    if not ok:
        raise HTTPException(403, f"you may not {permission} on fleet {fleet.name!r}")
    return fleet


def user_device(s: Session, *, user: UserPrincipal, uuid: str,
                permission: str = "device.read") -> t.Device:
    """A device the user holds `permission` on, by uuid, unique uuid prefix (>= 7) or name."""
    device, _fleet, ok = find_device(s, Rights.load(s, user), ref=uuid, permission=permission)
    if not ok:
        raise HTTPException(403, f"you may not {permission} on device {device.uuid[:7]}")
    return device
