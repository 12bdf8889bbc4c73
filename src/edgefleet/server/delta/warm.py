"""Deltas made before devices ask for them (issue 19): whenever a target may have changed (a
release finished, a pin, a variable: the state's generation grew) and every `RECHECK_S`
anyway (devices report new running releases), the server works out which deltas devices with
the `delta` configuration variable on will ask for: for each such device, each service's image
of the release it runs → that service's image of its target release. It starts making the
ones it has not made, so a device finds its delta ready instead of waiting for it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.model.delta import DELTA_VARS, delta_enabled
from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.delta.service import DeltaService, job_key
from edgefleet.server.target import merged_config

log = logging.getLogger(__name__)
POLL_S = 1.0
RECHECK_S = 30.0
MAX_PAIRS = 256
"""At most this many deltas are started per pass (the rest on the next ones)."""


class _State(Protocol):
    db: Database
    generation: int


def wanted(s: Session) -> list[tuple[str, str]]:
    """(running image, target image) refs of every device with deltas on whose target
    release differs from the one it runs, service by service, digest refs only."""
    devices = s.execute(sa.select(t.Device).where(
        t.Device.running_release_id.is_not(None))).scalars().all()
    if not devices:
        return []
    fleet_ids = {d.fleet_id for d in devices}
    variables: dict[int, list[t.Variable]] = {}
    for v in s.execute(sa.select(t.Variable).where(
            t.Variable.kind == "config", t.Variable.fleet_id.in_(fleet_ids),
            t.Variable.name.in_(DELTA_VARS), t.Variable.service == "")).scalars():
        variables.setdefault(v.fleet_id, []).append(v)
    fleets = {f.id: f for f in s.execute(sa.select(t.Fleet).where(
        t.Fleet.id.in_(fleet_ids))).scalars()}
    newest = dict(s.execute(sa.select(t.Release.fleet_id, sa.func.max(t.Release.id)).where(
        t.Release.fleet_id.in_(fleet_ids), t.Release.status == "success").group_by(
        t.Release.fleet_id)).all())
    pairs: dict[tuple[int, int], None] = {}
    for d in devices:
        config = merged_config([v for v in variables.get(d.fleet_id, [])
                                if v.device_id in (None, d.id)])
        fleet = fleets.get(d.fleet_id)
        if fleet is None or not delta_enabled(config):
            continue
        target = d.pinned_release_id or fleet.target_release_id or newest.get(d.fleet_id)
        if target is not None and d.running_release_id is not None \
                and target != d.running_release_id:
            pairs[(d.running_release_id, target)] = None
    images: dict[int, dict[int, str]] = {}
    release_ids = {r for pair in pairs for r in pair}
    for rid, sid, ref in s.execute(sa.select(
            t.ReleaseImage.release_id, t.ReleaseImage.service_id, t.ReleaseImage.ref).where(
            t.ReleaseImage.release_id.in_(release_ids))):
        images.setdefault(rid, {})[sid] = ref
    out: dict[tuple[str, str], None] = {}
    for running, target in pairs:
        for sid, dest in images.get(target, {}).items():
            src = images.get(running, {}).get(sid)
            if src and src != dest and "@sha256:" in src and "@sha256:" in dest:
                out[(src, dest)] = None
    return list(out)


def warm_once(state: _State, service: DeltaService) -> int:
    """Start the deltas devices will ask for that this server has not started; how many."""
    if service.registry is None:
        return 0
    with state.db.session() as s:
        pairs = wanted(s)
    started = 0
    for src, dest in pairs:
        if started >= MAX_PAIRS:
            break
        if job_key(src, dest) not in service.jobs:
            service.request(src, dest)
            started += 1
    return started


async def warm_loop(state: _State, service: DeltaService) -> None:
    """Runs for the server's life (cancelled when it stops)."""
    seen, last = -1, 0.0
    while True:
        await asyncio.sleep(POLL_S)
        if state.generation == seen and time.monotonic() - last < RECHECK_S:
            continue
        seen, last = state.generation, time.monotonic()
        try:
            started = await asyncio.to_thread(warm_once, state, service)
            if started:
                log.info("started making %d delta(s) devices will ask for", started)
        except Exception:  # keep serving; the next round retries
            log.exception("working out which deltas to make failed")
