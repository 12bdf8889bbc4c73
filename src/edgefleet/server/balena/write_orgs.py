"""`organization` writes (`balena organization create <name>`): an edgefleet organization,
as `POST /api/v1/orgs` makes one; the user becomes its owner."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.model.timeutil import now_ms
from edgefleet.server import audit
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.balena.odata import ODataError

RESOURCE = "organization"
HANDLE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
"""As `org_schemas.Handle`."""


def handle_of(name: str) -> str:
    """balena's handle for an organization name: lower case, other characters as `_`."""
    return re.sub(r"[^a-z0-9_.-]+", "_", name.strip().lower()).strip("_.-")[:64]


def create_org(s: Session, body: dict[str, Any], user_id: int) -> int:
    """A new organization owned by the user; its id. edgefleet keeps one name per
    organization, its handle: a `name` that is not one stands for the handle made from it."""
    extra = sorted(set(body) - {"name", "handle"})
    if extra:
        raise ODataError(f"organization: cannot set {', '.join(extra)} (settable: name, "
                         "handle)", code="NotImplemented")
    name = body.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 255:
        raise ODataError("name: the organization's name, 1-255 characters")
    handle = body.get("handle") or handle_of(name)
    if not isinstance(handle, str) or not HANDLE.match(handle):
        raise ODataError(f"handle: {handle!r} is not an organization handle (1-64 lower-case "
                         "letters, digits, '_', '.' or '-', starting with a letter or digit)")
    if s.execute(sa.select(o.Organization.id).where(o.Organization.handle == handle)).first():
        raise ODataError(f"Unique key constraint violated: organization {handle!r} exists; "
                         "pick another name", status=409, code="Conflict")
    org = o.Organization(handle=handle, created_ms=now_ms())
    s.add(org)
    s.flush()
    s.add(o.Member(organization_id=org.id, user_id=user_id, role="owner", created_ms=now_ms()))
    user = s.get(t.User, user_id)
    audit.record(s, actor=user.username if user else str(user_id), action="org.create",
                 organization=handle, target=handle)
    return int(org.id)
