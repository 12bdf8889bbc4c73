"""The audit trail of remote sessions: who reached which device, how, for how long, and
how many bytes went each way."""

from __future__ import annotations

import time

import sqlalchemy as sa

from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.keys import UserPrincipal


def now_ms() -> int:
    return int(time.time() * 1000)


def begin(db: Database, *, user: UserPrincipal, device_uuid: str, kind: str, target: str,
          command: str = "") -> int:
    """Record that a session starts; its id."""
    with db.writing() as s:
        row = t.TunnelSession(user_id=user.user_id, username=user.username,
                              device_uuid=device_uuid, kind=kind, target=target[:255],
                              command=command, started_ms=now_ms(), bytes_up=0, bytes_down=0,
                              result="")
        s.add(row)
        s.flush()
        return int(row.id)


def end(db: Database, *, session_id: int, bytes_up: int, bytes_down: int, result: str) -> None:
    """Record how a session ended."""
    with db.writing() as s:
        s.execute(sa.update(t.TunnelSession).where(t.TunnelSession.id == session_id).values(
            ended_ms=now_ms(), bytes_up=bytes_up, bytes_down=bytes_down, result=result[:2000]))


def sessions(db: Database, *, user: UserPrincipal, device_uuids: list[str] | None,
             limit: int) -> list[t.TunnelSession]:
    """Newest first: an admin sees every session, a user the sessions on their devices and
    their own."""
    with db.session() as s:
        q = sa.select(t.TunnelSession)
        if device_uuids is not None:
            q = q.where(t.TunnelSession.device_uuid.in_(device_uuids))
        if not user.is_admin:
            mine = sa.select(t.Device.uuid).join(t.Fleet, t.Fleet.id == t.Device.fleet_id).where(
                t.Fleet.owner_id == user.user_id)
            q = q.where(sa.or_(t.TunnelSession.user_id == user.user_id,
                               t.TunnelSession.device_uuid.in_(mine)))
        return list(s.execute(q.order_by(t.TunnelSession.id.desc()).limit(limit)).scalars())
