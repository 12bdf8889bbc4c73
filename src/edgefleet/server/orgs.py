"""Organizations and their members (`/api/v1/orgs`), and users' personal organizations."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy.orm import Session

from edgefleet.model.timeutil import now_ms
from edgefleet.server import audit, roles
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.authz import Access, allow
from edgefleet.server.org_schemas import MemberOut, MemberSet, OrgCreate, OrgOut
from edgefleet.server.state import ServerState

ERRORS = {401: {"description": "No or unknown token"}, 403: {"description": "Not allowed"},
          404: {"description": "No such organization (or not yours)"}}


def personal_org(s: Session, *, user: t.User) -> o.Organization:
    """Make the user's personal organization (handle = username, or username-N when taken)
    with the user as owner."""
    handle, n = user.username, 1
    while s.execute(sa.select(o.Organization.id).where(
            o.Organization.handle == handle)).first() is not None:
        n += 1
        handle = f"{user.username[:60]}-{n}"
    org = o.Organization(handle=handle, personal_of=user.id, created_ms=now_ms())
    s.add(org)
    s.flush()
    s.add(o.Member(organization_id=org.id, user_id=user.id, role="owner",
                   created_ms=now_ms()))
    return org


def personal_handle(s: Session, *, user_id: int) -> str:
    return s.execute(sa.select(o.Organization.handle).where(
        o.Organization.personal_of == user_id)).scalar() or ""


def router(*, state: ServerState) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["organizations"], responses=ERRORS)  # type: ignore[arg-type]
    db = state.db

    @api.get("/orgs", response_model=list[OrgOut])
    def list_orgs(a: Access = Depends(allow(state, roles.ACCOUNT))) -> list[OrgOut]:
        """Organizations you are a member of (or of one of whose fleets)."""
        with db.session() as s:
            rows = s.execute(sa.select(o.Organization, o.Member).join(
                o.Member, o.Member.organization_id == o.Organization.id).where(
                o.Member.user_id == a.user.user_id).order_by(o.Organization.handle)).all()
            out: dict[str, OrgOut] = {}
            for org, m in rows:
                prev = out.get(org.handle)
                role = m.role if m.fleet_id is None else (prev.role if prev else None)
                out[org.handle] = OrgOut(handle=org.handle, personal=org.personal_of is not None,
                                         role=role)
            return list(out.values())

    @api.post("/orgs", status_code=201, response_model=OrgOut, responses={409: {}})
    def create_org(body: OrgCreate, a: Access = Depends(allow(state, roles.ACCOUNT_WRITE))
                   ) -> OrgOut:
        """Create an organization; you become its owner."""
        with db.session() as s:
            taken = s.execute(sa.select(o.Organization.id).where(
                o.Organization.handle == body.handle)).first()
            if taken is not None:
                raise HTTPException(409, f"organization {body.handle!r} exists; pick another "
                                         "handle")
            org = o.Organization(handle=body.handle, created_ms=now_ms())
            s.add(org)
            s.flush()
            s.add(o.Member(organization_id=org.id, user_id=a.user.user_id, role="owner",
                           created_ms=now_ms()))
            audit.record(s, actor=a.user.username, action="org.create",
                         organization=org.handle, target=org.handle)
            return OrgOut(handle=org.handle, personal=False, role="owner")

    @api.get("/orgs/{org}/members", response_model=list[MemberOut])
    def list_members(org: str, a: Access = Depends(allow(state, "org.read"))
                     ) -> list[MemberOut]:
        """Members of the organization and their roles (organization-wide or per fleet)."""
        with db.session() as s:
            found = a.organization(s, org)
            rows = s.execute(sa.select(o.Member, t.User.username, t.Fleet.name).join(
                t.User, t.User.id == o.Member.user_id).outerjoin(
                t.Fleet, t.Fleet.id == o.Member.fleet_id).where(
                o.Member.organization_id == found.id).order_by(t.User.username)).all()
            return [MemberOut(username=u, role=m.role, fleet=f) for m, u, f in rows]

    @api.put("/orgs/{org}/members", response_model=MemberOut, responses={400: {}})
    def set_member(org: str, body: MemberSet, a: Access = Depends(allow(state, "org.members"))
                   ) -> MemberOut:
        """Invite a user or change their role (in the organization, or on one fleet)."""
        with db.session() as s:
            found = a.organization(s, org)
            user = s.execute(sa.select(t.User).where(t.User.username == body.username)).scalar()
            if user is None:
                raise HTTPException(404, f"no user {body.username!r}; an admin creates users "
                                         "with `edgefleet user create`")
            fleet_id = None
            if body.fleet is not None:
                fleet = s.execute(sa.select(t.Fleet).where(
                    t.Fleet.organization_id == found.id,
                    sa.or_(t.Fleet.name == body.fleet, t.Fleet.uuid == body.fleet))).scalar()
                if fleet is None:
                    raise HTTPException(404, f"no fleet {body.fleet!r} in {found.handle!r}")
                fleet_id = fleet.id
            row = s.execute(sa.select(o.Member).where(
                o.Member.organization_id == found.id, o.Member.user_id == user.id,
                o.Member.fleet_id.is_(None) if fleet_id is None
                else o.Member.fleet_id == fleet_id)).scalar()
            before = row.role if row else None
            if row is None:
                row = o.Member(organization_id=found.id, user_id=user.id, fleet_id=fleet_id,
                               role=body.role, created_ms=now_ms())
                s.add(row)
            if before == "owner" and body.role != "owner" and fleet_id is None:
                last_owner(s, found, user.id)
            row.role = body.role
            audit.record(s, actor=a.user.username, organization=found.handle,
                         action="member.invite" if before is None else "member.role",
                         target=body.username, detail={"role": body.role, "was": before,
                                                       "fleet": body.fleet})
            return MemberOut(username=user.username, role=body.role, fleet=body.fleet)

    @api.delete("/orgs/{org}/members/{username}", status_code=204)
    def remove_member(org: str, username: str,
                      a: Access = Depends(allow(state, "org.members"))) -> None:
        """Remove a user from the organization (all their roles in it)."""
        with db.session() as s:
            found = a.organization(s, org)
            user = s.execute(sa.select(t.User).where(t.User.username == username)).scalar()
            if user is None or found.personal_of == user.id:
                raise HTTPException(404 if user is None else 400,
                                    f"{username!r} cannot be removed from {found.handle!r}")
            last_owner(s, found, user.id)
            res = s.execute(sa.delete(o.Member).where(o.Member.organization_id == found.id,
                                                      o.Member.user_id == user.id))
            if not res.rowcount:  # type: ignore[attr-defined]
                raise HTTPException(404, f"{username!r} is not a member of {found.handle!r}")
            audit.record(s, actor=a.user.username, organization=found.handle,
                         action="member.remove", target=username)

    return api


def last_owner(s: Session, org: o.Organization, user_id: int) -> None:
    """Refuse to leave an organization without an owner."""
    others = s.execute(sa.select(sa.func.count(o.Member.id)).where(
        o.Member.organization_id == org.id, o.Member.role == "owner",
        o.Member.fleet_id.is_(None), o.Member.user_id != user_id)).scalar()
    if not others:
        raise HTTPException(400, f"{org.handle!r} would have no owner left; make another "
                                 "member owner first")
