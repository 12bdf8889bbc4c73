"""How fleets, devices and releases look in the user API (rows → reply models)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from fastapi import HTTPException
from sqlalchemy.orm import Session

from edgefleet.model.secret_names import is_secret_name
from edgefleet.model.timeutil import now_ms
from edgefleet.server import status as st
from edgefleet.server import tables as t
from edgefleet.server.audit import org_handle
from edgefleet.server.settings import ServerSettings
from edgefleet.server.target import merged_config, release_for, variables
from edgefleet.server.user_schemas import (
    DeviceOut,
    DeviceReleaseOut,
    FleetOut,
    ImageOut,
    ReleaseOut,
)


def resolve_release(s: Session, *, fleet: t.Fleet, commit: str) -> t.Release:
    """A successful release of the fleet by commit or unique prefix (404/409 otherwise)."""
    rows = list(s.execute(sa.select(t.Release).where(
        t.Release.fleet_id == fleet.id, t.Release.commit.startswith(commit)).limit(2)).scalars())
    exact = [r for r in rows if r.commit == commit]
    if exact:
        rows = exact
    if not rows:
        raise HTTPException(404, f"fleet {fleet.name!r} has no release {commit!r}")
    if len(rows) > 1:
        raise HTTPException(409, f"{commit!r} names more than one release")
    if rows[0].status != "success":
        raise HTTPException(409, f"release {rows[0].commit} is {rows[0].status}, not runnable")
    return rows[0]


def _commit(s: Session, release_id: int | None) -> str | None:
    if release_id is None:
        return None
    rel = s.get(t.Release, release_id)
    return rel.commit if rel else None


def fleet_out(s: Session, *, fleet: t.Fleet) -> FleetOut:
    latest = release_for(s, fleet=fleet)
    count = s.execute(sa.select(sa.func.count(t.Device.id)).where(
        t.Device.fleet_id == fleet.id)).scalar() or 0
    return FleetOut(id=fleet.id, uuid=fleet.uuid, name=fleet.name,
                    device_type=fleet.device_type,
                    target_release=_commit(s, fleet.target_release_id) or "latest",
                    release=latest.commit if latest else None, device_count=count,
                    organization=org_handle(s, fleet.organization_id))


def public_reported(stored: str | None) -> dict[str, Any]:
    """What a device reported, without secret-named fields (the supervisor API key a device
    reports for remote actions must not reach viewers or support agents)."""
    data = json.loads(stored or "{}")
    return {k: v for k, v in data.items() if not is_secret_name(str(k))} \
        if isinstance(data, dict) else {}


def device_out(s: Session, *, device: t.Device, settings: ServerSettings,
               last_seen_ms: int | None) -> DeviceOut:
    fleet = s.get(t.Fleet, device.fleet_id)
    assert fleet is not None
    config = merged_config([v for v in variables(s, fleet_id=fleet.id, device_id=device.id)
                            if v.kind == "config"])
    target = release_for(s, fleet=fleet, pinned_release_id=device.pinned_release_id)
    releases = list(s.execute(sa.select(t.DeviceRelease).where(
        t.DeviceRelease.device_id == device.id).order_by(*_DR_ORDER)).scalars())
    return _device_out(device=device, fleet=fleet, config=config, target=target,
                       releases=releases, settings=settings, last_seen_ms=last_seen_ms,
                       running=_commit(s, device.running_release_id),
                       pinned=_commit(s, device.pinned_release_id))


_DR_ORDER = (t.DeviceRelease.updated_ms.desc(), t.DeviceRelease.commit)
"""A device's releases, newest report first (commit breaks ties)."""


def _device_out(*, device: t.Device, fleet: t.Fleet, config: dict[str, str],
                target: t.Release | None, releases: Sequence[t.DeviceRelease],
                settings: ServerSettings, last_seen_ms: int | None,
                running: str | None, pinned: str | None) -> DeviceOut:
    timeout = st.heartbeat_timeout_s(poll_ms=st.poll_interval_ms(config=config),
                                     override_s=settings.heartbeat_timeout_s)
    hb = st.heartbeat_state(last_seen_ms=last_seen_ms, now_ms=now_ms(),
                            timeout_s=timeout, grace_s=settings.offline_grace_s)
    update_status = next((r.update_status for r in releases
                          if target is not None and r.commit == target.commit), None)
    return DeviceOut(
        id=device.id, uuid=device.uuid, name=device.name, fleet=fleet.name,
        device_type=device.device_type,
        status=st.overall_status(heartbeat=hb, vpn_connected=device.vpn_connected,
                              tunnel=settings.tunnel),
        heartbeat=hb, last_seen_ms=last_seen_ms, reported_status=device.status,
        running_release=running, pinned_release=pinned,
        target_release=target.commit if target else None, update_status=update_status,
        os_version=device.os_version, os_variant=device.os_variant,
        supervisor_version=device.supervisor_version, ip_address=device.ip_address,
        mac_address=device.mac_address, reported=public_reported(device.reported),
        releases=[DeviceReleaseOut(commit=r.commit, update_status=r.update_status,
                                   services=json.loads(r.services or "{}")) for r in releases],
        created_ms=device.created_ms)


def device_outs(s: Session, *, page: sa.Select[t.Device], settings: ServerSettings,
                seen: Callable[[t.Device], int | None]) -> list[DeviceOut]:
    """Every device `page` selects, as `device_out` renders each, in six statements whatever
    the number of devices (the ids travel as subqueries of `page`, never as long IN lists)."""
    devices = list(s.execute(page).scalars())
    if not devices:
        return []
    sub = page.subquery()
    dev_ids = sa.select(sub.c.id)
    fleet_ids = sa.select(sub.c.fleet_id)
    fleets = {f.id: f for f in s.execute(
        sa.select(t.Fleet).where(t.Fleet.id.in_(fleet_ids))).scalars()}
    config_vars: dict[int, list[t.Variable]] = {}
    for v in s.execute(sa.select(t.Variable).where(
            t.Variable.fleet_id.in_(fleet_ids), t.Variable.kind == "config",
            sa.or_(t.Variable.device_id.is_(None), t.Variable.device_id.in_(dev_ids)))
            .order_by(t.Variable.id)).scalars():
        config_vars.setdefault(v.fleet_id, []).append(v)
    latest = (sa.select(sa.func.max(t.Release.id)).where(
        t.Release.fleet_id.in_(fleet_ids), t.Release.status == "success")
        .group_by(t.Release.fleet_id))
    wanted = sa.union(
        sa.select(sub.c.pinned_release_id), sa.select(sub.c.running_release_id),
        sa.select(t.Fleet.target_release_id).where(t.Fleet.id.in_(fleet_ids)), latest)
    rels = {r.id: r for r in s.execute(sa.select(t.Release).where(
        t.Release.id.in_(sa.select(wanted.subquery().c[0])))).scalars()}
    newest: dict[int, t.Release] = {}
    for r in rels.values():
        if r.status == "success" and (r.fleet_id not in newest or r.id > newest[r.fleet_id].id):
            newest[r.fleet_id] = r
    reports: dict[int, list[t.DeviceRelease]] = {}
    for dr in s.execute(sa.select(t.DeviceRelease).where(
            t.DeviceRelease.device_id.in_(dev_ids)).order_by(*_DR_ORDER)).scalars():
        reports.setdefault(dr.device_id, []).append(dr)

    def commit(rid: int | None) -> str | None:
        rel = rels.get(rid) if rid is not None else None
        return rel.commit if rel else None

    def target(device: t.Device, fleet: t.Fleet) -> t.Release | None:
        for rid in (device.pinned_release_id, fleet.target_release_id):
            rel = rels.get(rid) if rid is not None else None
            if rel is not None and rel.status == "success" and rel.fleet_id == fleet.id:
                return rel
        return newest.get(fleet.id)

    out = []
    for d in devices:
        fleet = fleets[d.fleet_id]
        config = merged_config([v for v in config_vars.get(fleet.id, [])
                                if v.device_id in (None, d.id)])
        out.append(_device_out(
            device=d, fleet=fleet, config=config, target=target(d, fleet),
            releases=reports.get(d.id, []), settings=settings, last_seen_ms=seen(d),
            running=commit(d.running_release_id), pinned=commit(d.pinned_release_id)))
    return out


def release_out(s: Session, *, release: t.Release) -> ReleaseOut:
    fleet = s.get(t.Fleet, release.fleet_id)
    services = {sv.id: sv.name for sv in s.execute(sa.select(t.Service).where(
        t.Service.fleet_id == release.fleet_id)).scalars()}
    images = s.execute(sa.select(t.ReleaseImage).where(
        t.ReleaseImage.release_id == release.id).order_by(t.ReleaseImage.id)).scalars()
    return ReleaseOut(
        id=release.id, commit=release.commit, fleet=fleet.name if fleet else "",
        status=release.status, created_ms=release.created_ms, finished_ms=release.finished_ms,
        error=release.error,
        images=[ImageOut(service=services.get(i.service_id, ""), service_id=i.service_id,
                         image_id=i.id, ref=i.ref,
                         digest=i.digest, size=i.size) for i in images],
        composition=json.loads(release.composition or "{}"))
