"""A device's v3 target state (compat §2) from its fleet, release and variables."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.server import tables as t


@dataclass(frozen=True)
class RenderedTarget:
    """A target document as sent (bytes) and its ETag."""

    body: bytes
    etag: str
    generation: int


def release_for(s: Session, *, fleet: t.Fleet,
                pinned_release_id: int | None = None) -> t.Release | None:
    """The release a device should run: its pin, else the fleet's pin, else the latest
    successful release of the fleet."""
    for rid in (pinned_release_id, fleet.target_release_id):
        if rid is not None:
            rel = s.get(t.Release, rid)
            if rel is not None and rel.status == "success" and rel.fleet_id == fleet.id:
                return rel
    return s.execute(sa.select(t.Release).where(
        t.Release.fleet_id == fleet.id, t.Release.status == "success")
        .order_by(t.Release.id.desc()).limit(1)).scalar()


def variables(s: Session, *, fleet_id: int, device_id: int | None) -> list[t.Variable]:
    """The fleet's variables and (when device_id is given) the device's, fleet ones first."""
    cond: sa.ColumnElement[bool] = t.Variable.device_id.is_(None)
    if device_id is not None:
        cond = sa.or_(cond, t.Variable.device_id == device_id)
    rows = s.execute(sa.select(t.Variable).where(t.Variable.fleet_id == fleet_id, cond)).scalars()
    return sorted(rows, key=lambda v: (v.device_id is not None, v.id))


def merged_config(vars_: list[t.Variable]) -> dict[str, str]:
    """Config variables, device values over fleet values."""
    out: dict[str, str] = {}
    for level in (False, True):
        out.update({v.name: v.value for v in vars_
                    if v.kind == "config" and (v.device_id is not None) == level})
    return out


def service_environment(vars_: list[t.Variable], *, service: str) -> dict[str, str]:
    """Env for one service, lowest to highest: fleet, fleet+service, device, device+service
    (the image's own env lies below all of these, on the device)."""
    out: dict[str, str] = {}
    for on_device in (False, True):
        for svc in ("", service):
            out.update({v.name: v.value for v in vars_ if v.kind == "env"
                        and (v.device_id is not None) == on_device and v.service == svc})
    return out


def device_target(s: Session, *, device: t.Device) -> dict[str, Any]:
    """The v3 document `{uuid: {name, config, apps: {fleetUuid: {...}}}}`."""
    fleet = s.get(t.Fleet, device.fleet_id)
    assert fleet is not None
    vars_ = variables(s, fleet_id=fleet.id, device_id=device.id)
    releases: dict[str, Any] = {}
    release = release_for(s, fleet=fleet, pinned_release_id=device.pinned_release_id)
    if release is not None:
        rel = json.loads(release.target)
        for name, svc in rel.get("services", {}).items():
            svc["environment"] = service_environment(vars_, service=name)
        releases[release.commit] = rel
    app = {"id": fleet.id, "name": fleet.name, "class": "fleet", "is_host": False,
           "releases": releases}
    return {device.uuid: {"name": device.name, "config": merged_config(vars_),
                          "apps": {fleet.uuid: app}}}


def render(*, document: dict[str, Any], generation: int) -> RenderedTarget:
    """Serialise a target and compute its ETag (a hash of the exact bytes)."""
    body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return RenderedTarget(body=body, etag=f'"{hashlib.sha256(body).hexdigest()[:40]}"',
                          generation=generation)
