"""Dashboard passwords through the user API: a user sets their own, an admin sets anyone's."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.state import ServerState
from edgefleet.server.user_api import ERRORS, UserDep
from edgefleet.server.web.passwords import MIN_LENGTH, hash_password


class PasswordSet(BaseModel):
    """A new dashboard password (stored as an argon2id hash only)."""

    password: str = Field(min_length=MIN_LENGTH, max_length=1024)


def router(*, state: ServerState, current_user: UserDep) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["user"], responses=ERRORS)

    @api.put("/users/{username}/password", status_code=204, responses={404: {}})
    def set_password(username: str, body: PasswordSet,
                     user: keys.UserPrincipal = Depends(current_user)) -> None:
        """Set the dashboard password of `username` (yourself, or anyone as an admin); the
        user's open dashboard sessions are closed."""
        if username != user.username and not user.is_admin:
            raise HTTPException(403, "only an admin sets another user's password")
        hashed = hash_password(body.password)
        with state.db.session() as s:
            row = s.execute(sa.select(t.User).where(t.User.username == username)).scalar()
            if row is None:
                raise HTTPException(404, f"no user {username!r}")
            row.password_hash = hashed
            s.execute(sa.delete(t.WebSession).where(t.WebSession.user_id == row.id))

    return api
