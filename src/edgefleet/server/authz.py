"""Access checks, all driven by `roles`: each endpoint declares one named permission with
`allow(...)`, and the fleet, device or organization it names is looked up with it.

Who sees what: a member sees the fleets of their organization (or the fleets they are a
member of), a support agent the fleets and devices a live grant covers. Someone who cannot
see a resource gets 404 (its existence is not revealed); someone who sees it but lacks the
permission gets 403, recorded in the audit trail when the permission changes something.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from edgefleet.server import audit, keys, roles
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.access import require_user
from edgefleet.server.rights import Rights, find_device, find_fleet
from edgefleet.server.state import ServerState


@dataclass
class Access:
    """What `allow(permission)` hands a route: the user, the permission, and lookups of the
    resources the route names, each checked against that permission."""

    user: keys.UserPrincipal
    permission: str
    state: ServerState
    _rights: Rights | None = None

    def rights(self, s: Session) -> Rights:
        if self._rights is None:
            self._rights = Rights.load(s, self.user)
        return self._rights

    def refuse(self, *, fleet: t.Fleet | None = None, device: t.Device | None = None,
               organization: str = "", what: str) -> HTTPException:
        """403, with a `denied` record (in its own transaction) for a changing permission."""
        if self.permission not in roles.READ_ONLY:
            with self.state.db.session() as s:
                audit.record(s, actor=self.user.username, action=self.permission,
                             outcome="denied", organization=organization, fleet=fleet,
                             device=device, target=what)
        return HTTPException(403, f"you may not {self.permission} on {what} (see "
                                  "`edgefleet org members` for your role)")

    def fleet(self, s: Session, name: str) -> t.Fleet:
        """A fleet by name or uuid on which the user holds the permission."""
        fleet, ok = find_fleet(s, self.rights(s), name=name, permission=self.permission)
        if not ok:
            raise self.refuse(fleet=fleet, what=f"fleet {fleet.name!r}")
        return fleet

    def device(self, s: Session, ref: str) -> t.Device:
        """A device by uuid, unique uuid prefix (>= 7) or name, with the permission."""
        device, fleet, ok = find_device(s, self.rights(s), ref=ref, permission=self.permission)
        if not ok:
            raise self.refuse(fleet=fleet, device=device, what=f"device {device.uuid[:7]}")
        return device

    def fleets(self, s: Session) -> list[t.Fleet]:
        """Every fleet on which the user holds the permission, by name."""
        rights = self.rights(s)
        rows = s.execute(sa.select(t.Fleet).where(rights.candidate_fleets())
                         .order_by(t.Fleet.name, t.Fleet.id)).scalars()
        return [f for f in rows if rights.check(f, None, self.permission)]

    def devices(self, s: Session, *, fleet_id: int | None = None) -> list[t.Device]:
        """Every device on which the user holds the permission (of one fleet if given)."""
        rights = self.rights(s)
        q = sa.select(t.Device, t.Fleet).join(t.Fleet, t.Fleet.id == t.Device.fleet_id).where(
            rights.candidate_fleets())
        if fleet_id is not None:
            q = q.where(t.Fleet.id == fleet_id)
        return [d for d, f in s.execute(q.order_by(t.Device.id)).all()
                if rights.check(f, d.id, self.permission)]

    def organization(self, s: Session, handle: str | None) -> o.Organization:
        """An organization by handle (None: the user's personal one) with the permission."""
        if handle is None:
            org = s.execute(sa.select(o.Organization).where(
                o.Organization.personal_of == self.user.user_id)).scalar()
        else:
            org = s.execute(sa.select(o.Organization).where(
                o.Organization.handle == handle)).scalar()
        rights = self.rights(s)
        member = org is not None and (org.id in rights.org_roles or s.execute(
            sa.select(o.Member.id).where(o.Member.organization_id == org.id,
                                         o.Member.user_id == self.user.user_id)).first())
        if org is None or not member:
            raise HTTPException(404, f"no organization {handle!r}")
        if not roles.role_allows(rights.org_roles.get(org.id), self.permission):
            raise self.refuse(organization=org.handle, what=f"organization {org.handle!r}")
        return org

    def organizations(self, s: Session) -> list[str]:
        """Handles of the organizations in which the user holds the permission."""
        rights = self.rights(s)
        ids = [i for i, r in rights.org_roles.items() if roles.role_allows(r, self.permission)]
        return list(s.execute(sa.select(o.Organization.handle).where(
            o.Organization.id.in_(ids))).scalars())


AccessDep = Callable[..., Awaitable[Access]]
_scheme = HTTPBearer(auto_error=False)


def allow(state: ServerState, permission: str) -> AccessDep:
    """The dependency of an endpoint needing `permission` (one per endpoint; the route test
    finds it by its `permission` attribute)."""
    if permission not in roles.ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    async def dependency(request: Request, _cred: HTTPAuthorizationCredentials | None
                         = Depends(_scheme)) -> Access:
        user = require_user(await state.principal(request.headers.get("authorization")))
        if user.scope != "full" and permission not in roles.READ_ONLY:
            raise HTTPException(403, "this token is read-only; make a full token with "
                                     "`edgefleet token create NAME`")
        if permission == roles.ADMIN and not user.is_admin:
            raise HTTPException(403, "only a server administrator may do this")
        return Access(user=user, permission=permission, state=state)

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def allowed(s: Session, user: keys.UserPrincipal, permission: str, fleet: t.Fleet,
            device: t.Device | None = None) -> bool:
    """Whether `user` holds `permission` on `fleet` (or on `device` of it): the one check
    for code outside the routes (pages, tunnel)."""
    return bool(Rights.load(s, user).check(fleet, device.id if device else None, permission))


def allow_or_device(state: ServerState, permission: str
                    ) -> Callable[..., Awaitable[Access | None]]:
    """Like `allow`, for an endpoint a device's own key may use too: None for any key that
    is not a user token (the route then checks the device key)."""
    user_dep = allow(state, permission)

    async def dependency(request: Request, cred: HTTPAuthorizationCredentials | None
                         = Depends(_scheme)) -> Access | None:
        principal = await state.principal(request.headers.get("authorization"))
        if principal is not None and not isinstance(principal, keys.UserPrincipal):
            return None
        return await user_dep(request, cred)

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency
