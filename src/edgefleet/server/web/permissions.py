"""What a dashboard user may do: ONE table and ONE function that every page and form asks.

The answer comes from issue 15's role table (`server/roles.py`) through `server/rights.py`:
each page permission is one of the user API's named permissions (`ROLE_PERMISSION` below), so
a page and the API always agree. No page has a rule of its own, and a page never offers an
action that `allowed` refuses.
"""

from __future__ import annotations

import enum

import sqlalchemy as sa
from sqlalchemy.orm import object_session

from edgefleet.model.timeutil import now_ms
from edgefleet.server import org_tables as o
from edgefleet.server import roles
from edgefleet.server import tables as t
from edgefleet.server.keys import UserPrincipal
from edgefleet.server.rights import Rights, member_orgs
from edgefleet.server.tunnel.actions import ACTIONS


class Permission(enum.Enum):
    """The named things a user may do on a fleet (or a device of it)."""

    VIEW = "view"
    LOGS = "logs"
    VARIABLES_READ = "variables.read"
    VARIABLES_WRITE = "variables.write"
    CONFIG_WRITE = "config.write"
    PIN = "pin"
    MOVE = "move"
    NOTES = "notes"
    DIAGNOSTICS = "diagnostics"
    TERMINAL = "terminal"
    SUPPORT_READ = "support.read"
    SUPPORT_GRANT = "support.grant"


ROLE_PERMISSION: dict[Permission, str] = {
    Permission.VIEW: "fleet.read", Permission.LOGS: "device.logs",
    Permission.VARIABLES_READ: "variable.read", Permission.VARIABLES_WRITE: "variable.write",
    Permission.CONFIG_WRITE: "variable.write", Permission.PIN: "fleet.pin",
    Permission.MOVE: "device.update", Permission.NOTES: "device.note",
    Permission.DIAGNOSTICS: "device.diagnose", Permission.TERMINAL: "device.ssh",
    Permission.SUPPORT_READ: "support.read", Permission.SUPPORT_GRANT: "support.grant",
}
"""Each page permission as the user API names it (`roles.ROLE_PERMISSIONS`). Remote actions
each have their own (`actions_allowed`)."""


def allowed(user: UserPrincipal, permission: Permission, fleet: t.Fleet,
            device_id: int | None = None) -> bool:
    """May `user` do `permission` on `fleet`, or on its device `device_id` when given (a
    support grant may cover one device only)? Read in the fleet's own session (roles, fleet
    roles, live support grants)."""
    s = object_session(fleet)
    return s is not None and _answer(Rights.load(s, user), permission, fleet, device_id)


def _answer(rights: Rights, permission: Permission, fleet: t.Fleet,
            device_id: int | None) -> bool:
    name = ROLE_PERMISSION[permission]
    if permission is Permission.VIEW:
        return rights.check(fleet, device_id, name) is not None or (
            device_id is None and any(g.fleet_id == fleet.id for g in rights.grants))
    return bool(rights.check(fleet, device_id, name))


def device_scope(user: UserPrincipal, fleet: t.Fleet) -> list[int] | None:
    """The devices of `fleet` the user may see: None for all of them (a role, or a grant on
    the whole fleet), else the ids that device-wide support grants cover."""
    s = object_session(fleet)
    if s is None:
        return []
    rights = Rights.load(s, user)
    if rights.check(fleet, None, "fleet.read") is not None:
        return None
    return [g.device_id for g in rights.grants
            if g.fleet_id == fleet.id and g.device_id is not None]


def visible_fleets(user: UserPrincipal) -> sa.ColumnElement[bool]:
    """A WHERE clause on `fleets` selecting those the user may VIEW (same rule as `allowed`):
    fleets of the user's organizations, fleets they have a role on, fleets a live support
    grant covers (for a support agent)."""
    member = sa.select(o.Member.fleet_id).where(o.Member.user_id == user.user_id,
                                                o.Member.fleet_id.is_not(None))
    cond = sa.or_(t.Fleet.organization_id.in_(member_orgs(user.user_id)), t.Fleet.id.in_(member))
    if user.is_support:
        granted = sa.select(o.SupportGrant.fleet_id).where(
            o.SupportGrant.revoked_ms.is_(None), o.SupportGrant.expires_ms > now_ms())
        cond = sa.or_(cond, t.Fleet.id.in_(granted))
    return cond


def can(user: UserPrincipal, fleet: t.Fleet, device_id: int | None = None
        ) -> dict[str, bool]:
    """Every permission's answer for templates: `can.VARIABLES_WRITE` etc. (the same answers
    as `allowed`, from one read of the user's rights)."""
    s = object_session(fleet)
    if s is None:
        return {p.name: False for p in Permission}
    rights = Rights.load(s, user)
    return {p.name: _answer(rights, p, fleet, device_id) for p in Permission}


def actions_allowed(user: UserPrincipal, fleet: t.Fleet, device_id: int
                    ) -> tuple[dict[str, bool], bool]:
    """Each remote action's answer on the device, by the action's own permission
    (`roles.action_permission`, as the user API and `action_rules.authorize` decide), and
    whether the user acts there as a support agent (stopping actions then need a note)."""
    s = object_session(fleet)
    if s is None:
        return dict.fromkeys(ACTIONS, False), False
    rights = Rights.load(s, user)
    may = {a: bool(rights.check(fleet, device_id, roles.action_permission(a))) for a in ACTIONS}
    return may, rights.role(fleet) is None
