"""First start: create the admin user and hand out its token once."""

from __future__ import annotations

import sqlalchemy as sa

from edgefleet.model.timeutil import now_ms
from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.orgs import personal_org


def ensure_admin(db: Database, *, username: str = "admin") -> str | None:
    """Create the first admin when there is no user yet; its token, or None if users exist."""
    with db.session() as s:
        if s.execute(sa.select(t.User.id).limit(1)).first() is not None:
            return None
        user = t.User(username=username, is_admin=True, created_ms=now_ms())
        s.add(user)
        s.flush()
        personal_org(s, user=user)
        return keys.add_key(s, kind="user", user_id=user.id, name="first admin token")
