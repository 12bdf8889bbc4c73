"""Applying a device's state report (a diff) to what the server knows about it."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.server import tables as t
from edgefleet.server.device_schemas import DeviceReport

COLUMNS = ("status", "os_version", "os_variant", "supervisor_version", "mac_address",
           "ip_address")


def apply_report(s: Session, *, device_id: int, report: DeviceReport, now_ms: int) -> None:
    """Merge a report: named columns, other fields into `reported`, and per release the
    update status and services; a release reported `done` becomes the running one."""
    scalars = report.scalars()
    device = s.get(t.Device, device_id)
    if device is None:
        return
    for name in COLUMNS:
        value = scalars.pop(name, None)
        if value is not None:
            setattr(device, name, str(value))
    if scalars:
        merged = json.loads(device.reported or "{}")
        merged.update(scalars)
        device.reported = json.dumps(merged)
    device.last_report_ms = now_ms
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
