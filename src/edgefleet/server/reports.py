"""Applying a device's state report (a diff) to what the server knows about it."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.server import tables as t
from edgefleet.server.device_schemas import DeviceReport

MAX_REPORTED = 1 * 2**20
"""Largest stored report document (one report body is capped alike, by `limits`)."""
COLUMNS = ("status", "os_version", "os_variant", "supervisor_version", "mac_address",
           "ip_address")


_SET = ", ".join(f"{c} = COALESCE(:{c}, {c})" for c in (*COLUMNS, "reported"))
UPDATE = sa.text(f"UPDATE devices SET {_SET}, last_report_ms = :now WHERE id = :id")


def apply_reports(s: Session, items: list[tuple[int, DeviceReport, int]]) -> None:
    """Merge many reports `(device_id, report, now_ms)` at once: one SELECT for the stored
    `reported` documents, one UPDATE statement for all devices (hundreds per second arrive
    here, so no ORM); releases (rarer) per report."""
    rows: list[dict[str, Any]] = []
    need = [i for i, r, _ in items if set(r.scalars()) - set(COLUMNS)]
    stored: dict[int, str] = {}
    if need:
        table = t.Device.__table__
        stored = {k: v for k, v in s.connection().execute(sa.select(
            table.c.id, table.c.reported).where(table.c.id.in_(set(need)))).all()}
    for device_id, report, now_ms in items:
        scalars = report.scalars()
        row: dict[str, Any] = {c: None for c in COLUMNS}
        row.update(id=device_id, now=now_ms, reported=None)
        for name in COLUMNS:
            value = scalars.pop(name, None)
            if value is not None:
                row[name] = str(value)
        if scalars and device_id in stored:
            merged = json.loads(stored[device_id] or "{}")
            merged.update(scalars)
            text = json.dumps(merged)
            if len(text) > MAX_REPORTED:  # diffs adding keys must not grow it for ever
                text = json.dumps(scalars)
            stored[device_id] = row["reported"] = text
        rows.append(row)
    if rows:
        s.connection().execute(UPDATE, rows)
    for device_id, report, now_ms in items:
        if report.apps:
            _releases(s, device_id=device_id, report=report, now_ms=now_ms)


def _releases(s: Session, *, device_id: int, report: DeviceReport, now_ms: int) -> None:
    device = s.get(t.Device, device_id)
    if device is None:
        return
    for app_uuid, app in (report.apps or {}).items():
        for commit, rel in app.releases.items():
            _release(s, device=device, app_uuid=app_uuid, commit=commit,
                     update_status=rel.update_status,
                     services={k: v.model_dump(mode="json", exclude_none=True)
                               for k, v in rel.services.items()}, now_ms=now_ms)


def _release(s: Session, *, device: t.Device, app_uuid: str, commit: str,
             update_status: str | None, services: dict[str, Any], now_ms: int) -> None:
    row = s.get(t.DeviceRelease, (device.id, commit))
    if row is None:
        row = t.DeviceRelease(device_id=device.id, commit=commit, app_uuid=app_uuid,
                              update_status="", services="{}", updated_ms=now_ms)
        s.add(row)
    if update_status is not None:
        row.update_status = update_status
    if services:
        merged = json.loads(row.services or "{}")
        for name, svc in services.items():
            merged.setdefault(name, {}).update(svc)
        row.services = json.dumps(merged)
    row.updated_ms = now_ms
    if update_status == "done":
        rid = s.execute(sa.select(t.Release.id).where(
            t.Release.commit == commit, t.Release.fleet_id == device.fleet_id)).scalar()
        if rid is not None:
            device.running_release_id = rid
