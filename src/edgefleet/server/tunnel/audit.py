"""Remote sessions in the one audit trail (`server/audit.py`): who reached which device, how
(action `remote.<kind>`: shell, command, tcp, action, diagnostics), for how long, how many
bytes went each way, and how it ended. A record is written when a session starts (outcome
`open`) and completed when it ends."""

from __future__ import annotations

import json
import re

import sqlalchemy as sa

from edgefleet.model.timeutil import now_ms
from edgefleet.server import audit as trail
from edgefleet.server import org_tables as o
from edgefleet.server import roles
from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.keys import UserPrincipal
from edgefleet.server.org_schemas import AuditOut
from edgefleet.server.rights import Rights

CUT = trail.CUT


def outcome_of(result: str) -> str:
    """`ok` for a session that ended normally (closed, exit 0, HTTP 2xx/3xx), else
    `failed` (`cut` when access ended under it)."""
    if result in ("closed", "exit 0") or re.fullmatch(r"HTTP [23]\d\d", result):
        return "ok"
    return "cut" if result.startswith("cut") else "failed"


def begin(db: Database, *, user: UserPrincipal, device_uuid: str, kind: str, target: str,
          command: str = "", extra: dict[str, object] | None = None) -> int:
    """Record that a session starts; its id. `extra`: more detail (an action's confirmation
    and note)."""
    with db.writing() as s:
        device = s.execute(sa.select(t.Device).where(t.Device.uuid == device_uuid)).scalar()
        row = trail.record(s, actor=user.username, action=f"remote.{kind}", outcome="open",
                           device=device, target=target,
                           detail={"command": command, "ended_ms": None, "bytes_up": 0,
                                   "bytes_down": 0, "result": "", **(extra or {})})
        s.flush()
        return int(row.id)


def end(db: Database, *, session_id: int, bytes_up: int, bytes_down: int, result: str) -> None:
    """Record how a session ended."""
    with db.writing() as s:
        row = s.get(o.AuditEvent, session_id)
        if row is None:
            return
        detail = json.loads(row.detail or "{}")
        detail.update(ended_ms=now_ms(), bytes_up=bytes_up, bytes_down=bytes_down,
                      result=result[:2000])
        row.detail = json.dumps(detail, sort_keys=True)
        row.outcome = outcome_of(result)


def cut_open_sessions(s: sa.orm.Session) -> None:
    """At the start of the only server process: sessions still open were cut by its stop."""
    s.execute(sa.update(o.AuditEvent).where(o.AuditEvent.action.startswith("remote."),
                                            o.AuditEvent.outcome == "open")
              .values(outcome="cut"))


def sessions(db: Database, *, user: UserPrincipal, device_uuids: list[str] | None,
             limit: int) -> list[AuditOut]:
    """Remote records (sessions, actions, diagnostics) newest first, with their session
    fields: an admin sees all; a user those of the organizations where they may read the
    audit trail, and their own."""
    with db.session() as s:
        q = sa.select(o.AuditEvent).where(o.AuditEvent.action.startswith("remote."))
        if device_uuids is not None:
            q = q.where(o.AuditEvent.device.in_(device_uuids))
        if not user.is_admin:
            owned = [i for i, role in Rights.of_user(s, user.user_id).org_roles.items()
                     if roles.role_allows(role, "audit.read")]
            orgs = sa.select(o.Organization.handle).where(o.Organization.id.in_(owned))
            q = q.where(sa.or_(o.AuditEvent.organization.in_(orgs),
                               o.AuditEvent.actor == user.username))
        rows = s.execute(q.order_by(o.AuditEvent.id.desc()).limit(limit)).scalars()
        return [trail.audit_out(r) for r in rows]
