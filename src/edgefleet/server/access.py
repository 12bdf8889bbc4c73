"""Who may touch what: the checks every endpoint makes before it reads or writes."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import HTTPException
from sqlalchemy.orm import Session

from edgefleet.server import tables as t
from edgefleet.server.keys import DevicePrincipal, Principal, UserPrincipal


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


def user_fleet(s: Session, *, user: UserPrincipal, name: str) -> t.Fleet:
    """A fleet of this user by name (or uuid); 404 when the user has none such."""
    fleet = s.execute(sa.select(t.Fleet).where(
        t.Fleet.owner_id == user.user_id,
        sa.or_(t.Fleet.name == name, t.Fleet.uuid == name))).scalar()
    if fleet is None:
        raise HTTPException(404, f"no fleet {name!r}")
    return fleet


def user_device(s: Session, *, user: UserPrincipal, uuid: str) -> t.Device:
    """A device in one of this user's fleets by uuid, a unique uuid prefix (>= 7) or name."""
    q = sa.select(t.Device).join(t.Fleet, t.Fleet.id == t.Device.fleet_id).where(
        t.Fleet.owner_id == user.user_id)
    exact = s.execute(q.where(t.Device.uuid == uuid)).scalar()
    if exact is not None:
        return exact
    cond: sa.ColumnElement[bool] = t.Device.name == uuid
    if len(uuid) >= 7 and uuid.isalnum():
        cond = sa.or_(cond, t.Device.uuid.startswith(uuid))
    found = list(s.execute(q.where(cond).limit(2)).scalars())
    if len(found) == 1:
        return found[0]
    if not found:
        raise HTTPException(404, f"no device {uuid!r}")
    raise HTTPException(409, f"{uuid!r} names more than one device; use the full uuid")
