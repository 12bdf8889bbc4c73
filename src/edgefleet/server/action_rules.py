"""Who may run a remote action on a device, and on what terms (seed 000 §3): the action's
permission from `roles`, an explicit confirmation for actions that stop something, and from
a support agent a note saying why. Every decision lands in the audit trail."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from sqlalchemy.orm import Session

from edgefleet.server import audit, keys, roles
from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.rights import Rights


def authorize(db: Database, s: Session, *, user: keys.UserPrincipal, device: t.Device,
              action: str, confirmed: bool, note: str | None) -> dict[str, Any]:
    """Refuse (404 unseen, 403 not allowed, 428 unconfirmed or without a support note) or
    return the audit detail to record with the action's outcome. Refusals are recorded in
    their own transaction (the caller's rolls back)."""
    fleet = s.get(t.Fleet, device.fleet_id)
    assert fleet is not None
    rights = Rights.load(s, user)
    permission = roles.action_permission(action)
    allowed = rights.check(fleet, device.id, permission)
    if allowed is None:
        raise HTTPException(404, f"no device {device.uuid[:7]!r}")
    as_support = rights.role(fleet) is None
    detail = {"confirmed": confirmed, "note": note or "", "support": as_support}

    def refuse(status: int, why: str) -> HTTPException:
        with db.session() as other:
            audit.record(other, actor=user.username, action=f"action.{action}",
                         outcome="denied", fleet=fleet, device=device, target=action,
                         detail={**detail, "reason": why})
        return HTTPException(status, why)

    if not allowed:
        hint = ("; the support grant does not allow reboots (--allow-reboot)"
                if action == "reboot" and as_support else "")
        raise refuse(403, f"you may not {action} device {device.uuid[:7]} ({permission}{hint})")
    why = roles.action_refusal(action, confirmed=confirmed, note=note, is_support=as_support)
    if why is not None:
        raise refuse(428, why)
    return detail
