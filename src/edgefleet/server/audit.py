"""The audit trail: one record per change or remote access (actor, organization, target,
time, outcome), secret-looking variable values redacted, old records removed by age."""

from __future__ import annotations

import itertools
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.model.secret_names import is_secret_name
from edgefleet.model.timeutil import now_ms
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.org_schemas import AuditOut

REDACTED = "[REDACTED]"
TRIM_EVERY = 500
_written = itertools.count(1)


def org_handle(s: Session, organization_id: int | None) -> str:
    org = s.get(o.Organization, organization_id) if organization_id is not None else None
    return org.handle if org is not None else ""


def variable_value(name: str, value: str) -> str:
    """What the audit trail keeps of a variable's value: nothing for a secret-looking name."""
    return REDACTED if is_secret_name(name) else value


def record(s: Session, *, actor: str, action: str, outcome: str = "ok",
           organization: str = "", fleet: t.Fleet | None = None,
           device: t.Device | None = None, target: str = "",
           detail: dict[str, Any] | None = None, retention_days: int | None = None
           ) -> o.AuditEvent:
    """Add one record in the caller's transaction (it lands only if the change does)."""
    if fleet is None and device is not None:
        fleet = s.get(t.Fleet, device.fleet_id)
    if not organization and fleet is not None:
        organization = org_handle(s, fleet.organization_id)
    row = o.AuditEvent(ts_ms=now_ms(), actor=actor, organization=organization,
                       action=action, fleet=fleet.name if fleet else "",
                       device=device.uuid if device else "", target=target[:255],
                       outcome=outcome, detail=json.dumps(detail or {}, sort_keys=True))
    s.add(row)
    if retention_days is not None and next(_written) % TRIM_EVERY == 0:
        trim(s, retention_days=retention_days)
    return row


def trim(s: Session, *, retention_days: int) -> int:
    """Remove records older than `retention_days`; how many went."""
    cutoff = now_ms() - retention_days * 86_400_000
    res = s.execute(sa.delete(o.AuditEvent).where(o.AuditEvent.ts_ms < cutoff))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


def query(s: Session, *, organizations: list[str] | None, device: str | None = None,
          fleet: str | None = None, actor: str | None = None, since_ms: int | None = None,
          until_ms: int | None = None, limit: int = 500) -> list[o.AuditEvent]:
    """Records, newest first; `organizations` None = all (else only those organizations')."""
    q = sa.select(o.AuditEvent)
    if organizations is not None:
        q = q.where(o.AuditEvent.organization.in_(organizations))
    for col, value in ((o.AuditEvent.device, device), (o.AuditEvent.fleet, fleet),
                       (o.AuditEvent.actor, actor)):
        if value:
            q = q.where(col == value)
    if since_ms is not None:
        q = q.where(o.AuditEvent.ts_ms >= since_ms)
    if until_ms is not None:
        q = q.where(o.AuditEvent.ts_ms < until_ms)
    return list(s.execute(q.order_by(o.AuditEvent.id.desc()).limit(limit)).scalars())


CUT = "cut: the server stopped during the session"


def audit_out(r: o.AuditEvent) -> AuditOut:
    """A record; a remote session's also with its session fields (kind, command, bytes...)."""
    out = AuditOut(id=r.id, ts_ms=r.ts_ms, actor=r.actor, organization=r.organization,
                   action=r.action, fleet=r.fleet, device=r.device, target=r.target,
                   outcome=r.outcome, detail=r.detail, username=r.actor, device_uuid=r.device)
    if r.action.startswith("remote."):
        d = json.loads(r.detail or "{}")
        cut = r.outcome == "cut" and not d.get("result")
        out = out.model_copy(update={
            "kind": r.action.split(".", 1)[1], "command": d.get("command", ""),
            "started_ms": r.ts_ms, "ended_ms": d.get("ended_ms") or (r.ts_ms if cut else None),
            "bytes_up": d.get("bytes_up", 0), "bytes_down": d.get("bytes_down", 0),
            "result": d.get("result") or (CUT if cut else "")})
    return out
