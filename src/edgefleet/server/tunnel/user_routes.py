"""The user API of remote access over HTTP: the audit trail (actions and diagnostics join it
in `actions`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from edgefleet.server import keys
from edgefleet.server.access import user_device
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel import audit
from edgefleet.server.user_api import ERRORS, UserDep


def router(*, state: ServerState, current_user: UserDep) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["remote access"], responses=ERRORS)

    @api.get("/audit", responses={404: {}})
    def list_audit(device: str | None = Query(None, max_length=64),
                   limit: int = Query(100, ge=1, le=10000),
                   user: keys.UserPrincipal = Depends(current_user)) -> list[dict[str, Any]]:
        """Remote sessions, newest first (of one device with `device`)."""
        uuids = None
        if device is not None:
            with state.db.session() as s:
                uuids = [user_device(s, user=user, uuid=device).uuid]
        rows = audit.sessions(state.db, user=user, device_uuids=uuids, limit=limit)
        return [{c: getattr(r, c) for c in (
            "id", "username", "device_uuid", "kind", "target", "command", "started_ms",
            "ended_ms", "bytes_up", "bytes_down", "result")} for r in rows]

    return api
