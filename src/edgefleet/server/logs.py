"""Device log storage: batched inserts, rate limiting with a "Suppressed" line, retention."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.server import tables as t

MAX_MESSAGE = 10_000
MAX_LINE = 64 * 1024
"""Longest NDJSON line of a log stream; longer lines are counted invalid, never buffered."""


@dataclass
class RateLimiter:
    """A token bucket per device: `rate` lines/s, bursts up to 10 s worth."""

    rate: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)
    dropped: int = 0

    def allow(self) -> bool:
        now = time.monotonic()
        cap = self.rate * 10
        self.tokens = cap if self.tokens < 0 else min(cap, self.tokens + (now - self.stamp)
                                                      * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.dropped += 1
        return False


def row(*, device_id: int, line: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """A `device_logs` row from a validated log line."""
    ts = line.get("timestamp")
    return {"device_id": device_id, "ts_ms": int(ts) if ts else now_ms,
            "service_id": line.get("serviceId"), "is_system": bool(line.get("isSystem")),
            "is_stderr": bool(line.get("isStdErr")),
            "message": str(line["message"])[:MAX_MESSAGE].replace("\x00", "\ufffd")}


def suppressed_row(*, device_id: int, count: int, now_ms: int) -> dict[str, Any]:
    return {"device_id": device_id, "ts_ms": now_ms, "service_id": None, "is_system": True,
            "is_stderr": False,
            "message": f"Suppressed {count} message(s) due to rate limiting"}


def insert(s: Session, *, rows: list[dict[str, Any]]) -> None:
    if rows:
        s.execute(sa.insert(t.DeviceLog), rows)


def trim(s: Session, *, device_id: int, keep: int, max_age_days: int, now_ms: int) -> None:
    """Keep the newest `keep` lines of a device, none older than `max_age_days`."""
    cutoff = s.execute(sa.select(t.DeviceLog.id).where(t.DeviceLog.device_id == device_id)
                       .order_by(t.DeviceLog.id.desc()).offset(keep).limit(1)).scalar()
    old = now_ms - max_age_days * 86_400_000
    cond = t.DeviceLog.ts_ms < old
    if cutoff is not None:
        cond = sa.or_(cond, t.DeviceLog.id <= cutoff)
    s.execute(sa.delete(t.DeviceLog).where(t.DeviceLog.device_id == device_id, cond))


def read(s: Session, *, device_id: int, after_id: int = 0, count: int | None = None,
         service_id: int | None = None) -> list[t.DeviceLog]:
    """Lines of a device with id > after_id, oldest first (the newest `count` if given)."""
    q = sa.select(t.DeviceLog).where(t.DeviceLog.device_id == device_id,
                                     t.DeviceLog.id > after_id)
    if service_id is not None:
        q = q.where(t.DeviceLog.service_id == service_id)
    if count is not None:
        rows = list(s.execute(q.order_by(t.DeviceLog.id.desc()).limit(count)).scalars())
        return rows[::-1]
    return list(s.execute(q.order_by(t.DeviceLog.id).limit(5000)).scalars())


def to_wire(line: t.DeviceLog, *, services: dict[int, str]) -> dict[str, Any]:
    """A stored line as balena's readers get it (plus `serviceName` when known)."""
    out: dict[str, Any] = {"message": line.message, "timestamp": line.ts_ms,
                           "isSystem": line.is_system, "isStdErr": line.is_stderr}
    if line.service_id is not None:
        out["serviceId"] = line.service_id
        if line.service_id in services:
            out["serviceName"] = services[line.service_id]
    return out
