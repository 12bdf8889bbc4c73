"""What a dashboard user may do: ONE table and ONE function that every page and form asks.

Today the answer comes from ownership (a fleet's owner may do everything with it; nobody else
sees it, as in the user API). Roles and support grants (issue 15) replace `allowed` and the
table below; no page has a rule of its own, and a page never offers an action that `allowed`
refuses.
"""

from __future__ import annotations

import enum

import sqlalchemy as sa

from edgefleet.server import tables as t
from edgefleet.server.keys import UserPrincipal


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
    SERVICE_ACTIONS = "actions.service"
    DEVICE_ACTIONS = "actions.device"


OWNER_PERMISSIONS = frozenset(Permission)
"""What the owner of a fleet may do with it (issue 15's role table goes here)."""


def allowed(user: UserPrincipal, permission: Permission, fleet: t.Fleet) -> bool:
    """May `user` do `permission` on `fleet` (and its devices)?"""
    return fleet.owner_id == user.user_id and permission in OWNER_PERMISSIONS


def visible_fleets(user: UserPrincipal) -> sa.ColumnElement[bool]:
    """A WHERE clause on `fleets` selecting those the user may VIEW (same rule as `allowed`)."""
    return t.Fleet.owner_id == user.user_id


def can(user: UserPrincipal, fleet: t.Fleet) -> dict[str, bool]:
    """Every permission's answer for templates: `can.VARIABLES_WRITE` etc."""
    return {p.name: allowed(user, p, fleet) for p in Permission}
