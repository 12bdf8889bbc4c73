"""A user's rights, read once per request: memberships (organization and fleet roles) and, for
a support agent, the live grants; and the lookups of fleets and devices under them."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from fastapi import HTTPException
from sqlalchemy.orm import Session

from edgefleet.model.timeutil import now_ms
from edgefleet.server import keys, roles
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t


def live_grants(*, now: int) -> sa.Select[o.SupportGrant]:
    return sa.select(o.SupportGrant).where(o.SupportGrant.revoked_ms.is_(None),
                                           o.SupportGrant.expires_ms > now)


@dataclass
class Rights:
    """A user's memberships and (for a support agent) live grants, read once per request."""

    org_roles: dict[int, str] = field(default_factory=dict)
    fleet_roles: dict[int, str] = field(default_factory=dict)
    grants: list[o.SupportGrant] = field(default_factory=list)

    @classmethod
    def load(cls, s: Session, user: keys.UserPrincipal) -> Rights:
        return cls.of_user(s, user.user_id, is_support=user.is_support)

    @classmethod
    def of_user(cls, s: Session, user_id: int, *, is_support: bool = False) -> Rights:
        rights = cls()
        for m in s.execute(sa.select(o.Member).where(o.Member.user_id == user_id)
                           ).scalars():
            if m.fleet_id is None:
                rights.org_roles[m.organization_id] = m.role
            else:
                rights.fleet_roles[m.fleet_id] = m.role
        if is_support:
            rights.grants = list(s.execute(live_grants(now=now_ms())).scalars())
        return rights

    def role(self, fleet: t.Fleet) -> str | None:
        """The finer role wins: a role on the fleet over the role in its organization."""
        return self.fleet_roles.get(fleet.id) or (
            self.org_roles.get(fleet.organization_id) if fleet.organization_id else None)

    def covering(self, fleet: t.Fleet, device_id: int | None) -> list[o.SupportGrant]:
        return [g for g in self.grants if g.fleet_id == fleet.id
                and (g.device_id is None or g.device_id == device_id)]

    def check(self, fleet: t.Fleet, device_id: int | None, permission: str) -> bool | None:
        """True: allowed; False: visible but not allowed; None: not visible at all."""
        role = self.role(fleet)
        grants = self.covering(fleet, device_id)
        if role is None and not grants:
            return None
        if roles.role_allows(role, permission):
            return True
        return any(roles.support_allows(permission, allow_reboot=g.allow_reboot)
                   for g in grants)

    def device_condition(self, permission: str) -> sa.ColumnElement[bool]:
        """SQL for "the user holds `permission` on this device" (over Device joined with
        Fleet): the same rule as `check`, for listing pages in the database."""
        finer = list(self.fleet_roles)
        orgs = [i for i, r in self.org_roles.items() if roles.role_allows(r, permission)]
        fleets = [i for i, r in self.fleet_roles.items() if roles.role_allows(r, permission)]
        grants = [g for g in self.grants
                  if roles.support_allows(permission, allow_reboot=g.allow_reboot)]
        return sa.or_(
            sa.and_(t.Fleet.organization_id.in_(orgs), t.Fleet.id.not_in(finer)),
            t.Fleet.id.in_(fleets + [g.fleet_id for g in grants if g.device_id is None]),
            t.Device.id.in_([g.device_id for g in grants if g.device_id is not None]))

    def candidate_fleets(self) -> sa.ColumnElement[bool]:
        ids = set(self.fleet_roles) | {g.fleet_id for g in self.grants}
        return sa.or_(t.Fleet.organization_id.in_(list(self.org_roles)), t.Fleet.id.in_(ids))


def find_fleet(s: Session, rights: Rights, *, name: str, permission: str
               ) -> tuple[t.Fleet, bool]:
    """The visible fleet named `name` (name or uuid) and whether `permission` holds on it;
    404 when none is visible, 409 when the name is ambiguous."""
    found = list(s.execute(sa.select(t.Fleet).where(
        rights.candidate_fleets(), sa.or_(t.Fleet.name == name, t.Fleet.uuid == name))
        .limit(3)).scalars())
    found = [f for f in found if rights.check(f, None, permission) is not None]
    if not found:
        raise HTTPException(404, f"no fleet {name!r}")
    if len(found) > 1:
        raise HTTPException(409, f"{name!r} names fleets of several organizations; "
                                 "use the fleet's uuid")
    return found[0], bool(rights.check(found[0], None, permission))


def find_device(s: Session, rights: Rights, *, ref: str, permission: str
                ) -> tuple[t.Device, t.Fleet, bool]:
    """The visible device `ref` (uuid, unique uuid prefix >= 7, or name), its fleet, and
    whether `permission` holds on it; 404 when none is visible, 409 when ambiguous."""
    q = sa.select(t.Device, t.Fleet).join(t.Fleet, t.Fleet.id == t.Device.fleet_id).where(
        rights.candidate_fleets())
    rows = [(d, f) for d, f in s.execute(q.where(t.Device.uuid == ref)).all()]
    if not rows:
        cond: sa.ColumnElement[bool] = t.Device.name == ref
        if len(ref) >= 7 and ref.isalnum():
            cond = sa.or_(cond, t.Device.uuid.startswith(ref))
        rows = [(d, f) for d, f in s.execute(q.where(cond).limit(10)).all()]
    rows = [(d, f) for d, f in rows if rights.check(f, d.id, permission) is not None]
    if not rows:
        raise HTTPException(404, f"no device {ref!r}")
    if len(rows) > 1:
        raise HTTPException(409, f"{ref!r} names more than one device; use the full uuid")
    device, fleet = rows[0]
    return device, fleet, bool(rights.check(fleet, device.id, permission))


def may(s: Session, user_id: int, fleet: t.Fleet, permission: str) -> bool:
    """Whether the user's memberships give `permission` on `fleet` (no support grants: for
    the balena API, which support agents do not use)."""
    return bool(Rights.of_user(s, user_id).check(fleet, None, permission))


def member_orgs(user_id: int | sa.ColumnElement[int]) -> sa.Select[int]:
    """Ids of the organizations the user is a member of (organization-wide roles)."""
    return sa.select(o.Member.organization_id).where(o.Member.user_id == user_id,
                                                     o.Member.fleet_id.is_(None))
