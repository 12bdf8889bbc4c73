"""Your tokens (`/api/v1/tokens`: named, with expiry and scope; listed and revoked), support
agents (`PATCH /api/v1/users/{name}`, admins), and the audit trail (`/api/v1/audit`)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Query

from edgefleet.model.timeutil import now_ms
from edgefleet.server import audit, keys, roles
from edgefleet.server import tables as t
from edgefleet.server.authz import Access, allow
from edgefleet.server.org_schemas import MAX_ID, AuditOut, TokenOut, UserUpdate
from edgefleet.server.orgs import ERRORS, personal_handle
from edgefleet.server.state import ServerState
from edgefleet.server.user_schemas import KeyCreated, TokenCreate


def router(*, state: ServerState) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["account"], responses=ERRORS)  # type: ignore[arg-type]
    db = state.db

    @api.post("/tokens", status_code=201, response_model=KeyCreated)
    def create_token(body: TokenCreate, a: Access = Depends(allow(state, roles.ACCOUNT_WRITE))
                     ) -> KeyCreated:
        """A new API token for the calling user: named, optionally expiring, `full` or
        `read` (read-only). Only its hash is stored; it is shown once."""
        expires = now_ms() + body.expires_in_s * 1000 if body.expires_in_s else None
        with db.session() as s:
            key = keys.add_key(s, kind="user", user_id=a.user.user_id, name=body.name,
                               expires_ms=expires, scope=body.scope)
            audit.record(s, actor=a.user.username, action="token.create",
                         organization=personal_handle(s, user_id=a.user.user_id),
                         target=body.name, detail={"scope": body.scope, "expires_ms": expires},
                         retention_days=state.settings.audit_retention_days)
            return KeyCreated(key=key)

    @api.get("/tokens", response_model=list[TokenOut])
    def list_tokens(a: Access = Depends(allow(state, roles.ACCOUNT))) -> list[TokenOut]:
        """Your tokens (never their secrets)."""
        with db.session() as s:
            rows = s.execute(sa.select(t.ApiKey).where(
                t.ApiKey.kind == "user", t.ApiKey.user_id == a.user.user_id)
                .order_by(t.ApiKey.id)).scalars()
            return [TokenOut(id=k.id, name=k.name, scope=k.scope, created_ms=k.created_ms,
                             expires_ms=k.expires_ms) for k in rows]

    @api.delete("/tokens/{token_id}", status_code=204)
    def revoke_token(token_id: int = Path(ge=1, le=MAX_ID), *,
                     a: Access = Depends(allow(state, roles.ACCOUNT_WRITE))) -> None:
        """Revoke one of your tokens: it stops working at once (in every server process
        within `cache_refresh_s`)."""
        with db.session() as s:
            row = s.get(t.ApiKey, token_id)
            if row is None or row.kind != "user" or row.user_id != a.user.user_id:
                raise HTTPException(404, f"you have no token {token_id}; see "
                                         "`edgefleet token list`")
            audit.record(s, actor=a.user.username, action="token.revoke",
                         organization=personal_handle(s, user_id=a.user.user_id),
                         target=row.name or str(token_id))
            s.delete(row)
            db.bump_generation(s, keys=True)
        state.refresh_generation()

    @api.patch("/users/{username}", status_code=204)
    def update_user(username: str, body: UserUpdate,
                    a: Access = Depends(allow(state, roles.ADMIN))) -> None:
        """Mark a user as a support agent, or not (admins only)."""
        with db.session() as s:
            user = s.execute(sa.select(t.User).where(t.User.username == username)).scalar()
            if user is None:
                raise HTTPException(404, f"no user {username!r}")
            user.is_support = body.is_support
            audit.record(s, actor=a.user.username, action="user.support",
                         organization=personal_handle(s, user_id=user.id), target=username,
                         detail={"is_support": body.is_support})
            db.bump_generation(s, keys=True)  # cached principals carry the flag
        state.refresh_generation()

    @api.get("/audit", response_model=list[AuditOut])
    def read_audit(device: str | None = Query(None, max_length=64),
                   fleet: str | None = Query(None, max_length=128),
                   actor: str | None = Query(None, max_length=64),
                   since_ms: int | None = Query(None, ge=0, le=MAX_ID),
                   until_ms: int | None = Query(None, ge=0, le=MAX_ID),
                   limit: int = Query(500, ge=1, le=5000),
                   a: Access = Depends(allow(state, "audit.read"))) -> list[AuditOut]:
        """Audit records of the organizations you own, newest first, filtered by device
        (uuid), fleet (name), actor (username) and time."""
        with db.session() as s:
            rows = audit.query(s, organizations=a.organizations(s), device=device,
                               fleet=fleet, actor=actor, since_ms=since_ms,
                               until_ms=until_ms, limit=limit)
            return [audit.audit_out(r) for r in rows]

    return api
