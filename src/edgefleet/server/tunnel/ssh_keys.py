"""Users' SSH public keys for the SSH front door: add, list, remove; and who holds a key."""

from __future__ import annotations

import time
from typing import Any

import asyncssh
import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from edgefleet.server import keys, roles
from edgefleet.server import tables as t
from edgefleet.server.authz import Access, allow
from edgefleet.server.db import Database
from edgefleet.server.state import ServerState
from edgefleet.server.user_api import ERRORS


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    public_key: str = Field(min_length=16, max_length=16384)


def parse(text: str) -> tuple[str, str]:
    """(`type base64`, fingerprint) of an OpenSSH public key line; ValueError otherwise."""
    try:
        key = asyncssh.import_public_key(text.strip())
    except Exception as exc:  # any parser failure is the caller's bad input
        raise ValueError(f"not an SSH public key ({exc}); give the contents of a .pub file "
                         "such as ~/.ssh/id_ed25519.pub") from None
    return " ".join(text.split()[:2]), key.get_fingerprint("sha256")


def key_owner(db: Database, *, username: str, fingerprint: str) -> keys.UserPrincipal | None:
    """The user named `username` if `fingerprint` is one of their keys."""
    with db.session() as s:
        row = s.execute(sa.select(t.User).join(t.SshKey, t.SshKey.user_id == t.User.id).where(
            t.User.username == username, t.SshKey.fingerprint == fingerprint)).scalar()
        return keys.UserPrincipal(row.id, row.username, bool(row.is_admin),
                                  bool(row.is_support)) if row else None


def router(*, state: ServerState) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["remote access"], responses=ERRORS)

    def out(k: t.SshKey) -> dict[str, Any]:
        return {"id": k.id, "name": k.name, "fingerprint": k.fingerprint,
                "public_key": k.public_key, "created_ms": k.created_ms}

    @api.post("/ssh-keys", status_code=201, responses={400: {}, 409: {}})
    def add_key(body: KeyIn, a: Access = Depends(allow(state, roles.ACCOUNT_WRITE))
                ) -> dict[str, Any]:
        """Register an SSH public key of yours (for `ssh -p PORT you@server host <uuid>`)."""
        user = a.user
        try:
            public, fingerprint = parse(body.public_key)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            with state.db.writing() as s:
                row = t.SshKey(user_id=user.user_id, name=body.name, public_key=public,
                               fingerprint=fingerprint, created_ms=int(time.time() * 1000))
                s.add(row)
                s.flush()
                return out(row)
        except IntegrityError:
            raise HTTPException(409, f"a key named {body.name!r} or with fingerprint "
                                     f"{fingerprint} is registered already") from None

    @api.get("/ssh-keys")
    def list_keys(a: Access = Depends(allow(state, roles.ACCOUNT))) -> list[dict[str, Any]]:
        """Your SSH public keys."""
        user = a.user
        with state.db.session() as s:
            return [out(k) for k in s.execute(sa.select(t.SshKey).where(
                t.SshKey.user_id == user.user_id).order_by(t.SshKey.id)).scalars()]

    @api.delete("/ssh-keys/{name}", status_code=204, responses={404: {}})
    def remove_key(name: str, a: Access = Depends(allow(state, roles.ACCOUNT_WRITE))) -> None:
        """Remove one of your SSH keys (by name or fingerprint)."""
        user = a.user
        with state.db.writing() as s:
            result = s.execute(sa.delete(t.SshKey).where(
                t.SshKey.user_id == user.user_id,
                sa.or_(t.SshKey.name == name, t.SshKey.fingerprint == name)))
            gone = int(getattr(result, "rowcount", 0))
        if not gone:
            raise HTTPException(404, f"you have no SSH key {name!r}")

    return api
