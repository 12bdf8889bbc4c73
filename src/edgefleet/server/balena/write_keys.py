"""`user__has__public_key` writes (`balena ssh-key add|rm`): the user's own SSH keys, the
same rows as `edgefleet key add` registers for the SSH front door; `api_key` deletes
(`balena api-key revoke`): the user's own API tokens, as `edgefleet token revoke`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.model.timeutil import now_ms
from edgefleet.server import audit
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.balena.odata import ODataError
from edgefleet.server.tunnel.ssh_keys import parse

RESOURCE = "user__has__public_key"
API_KEY = "api_key"
FIELDS = {"title", "public_key", "user"}


def create_key(s: Session, body: dict[str, Any], user_id: int) -> int:
    """Register one of the user's own keys; its id."""
    extra = sorted(set(body) - FIELDS)
    if extra:
        raise ODataError(f"{RESOURCE}: cannot set {', '.join(extra)} (settable: "
                         f"{', '.join(sorted(FIELDS))})", code="NotImplemented")
    if body.get("user", user_id) != user_id:
        raise ODataError("user: you can add SSH keys to your own account only", status=403,
                         code="Forbidden")
    title, text = body.get("title"), body.get("public_key")
    if not isinstance(title, str) or not 0 < len(title) <= 255:
        raise ODataError("title: the key's name, 1-255 characters")
    if not isinstance(text, str) or not 16 <= len(text) <= 16384:
        raise ODataError("public_key: the contents of a .pub file (16-16384 characters)")
    try:
        public, fingerprint = parse(text)
    except ValueError as exc:
        raise ODataError(f"public_key: {exc}") from None
    clash = s.execute(sa.select(t.SshKey.user_id, t.SshKey.name).where(sa.or_(
        t.SshKey.fingerprint == fingerprint,
        sa.and_(t.SshKey.user_id == user_id, t.SshKey.name == title)))).first()
    if clash is not None:
        what = f"a key named {title!r}" if clash.user_id == user_id and clash.name == title \
            else f"the key {fingerprint}"
        raise ODataError(f"Unique key constraint violated: {what} is registered already",
                         status=409, code="Conflict")
    row = t.SshKey(user_id=user_id, name=title, public_key=public, fingerprint=fingerprint,
                   created_ms=now_ms())
    s.add(row)
    s.flush()
    return row.id


def delete_keys(s: Session, ids: list[int], user_id: int) -> None:
    """Remove keys of the user's (`ids` are those the user can see: their own)."""
    if ids:
        s.execute(sa.delete(t.SshKey).where(t.SshKey.id.in_(ids),
                                            t.SshKey.user_id == user_id))


def revoke_tokens(s: Session, ids: list[int], user_id: int) -> None:
    """Revoke API tokens of the user's (`ids` are those the user can see: their own); each
    stops working at once, audited as `token.revoke` as `edgefleet token revoke` does."""
    user = s.get(t.User, user_id)
    handle = s.execute(sa.select(o.Organization.handle).where(
        o.Organization.personal_of == user_id)).scalar() or ""
    rows = s.execute(sa.select(t.ApiKey).where(
        t.ApiKey.id.in_(ids), t.ApiKey.kind == "user", t.ApiKey.user_id == user_id)).scalars()
    for row in list(rows):
        audit.record(s, actor=user.username if user else str(user_id), action="token.revoke",
                     organization=handle,
                     target=row.name or str(row.id))
        s.delete(row)
