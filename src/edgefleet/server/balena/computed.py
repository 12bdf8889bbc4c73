"""Computed device fields (`is_online`, `status`, `overall_status`, ...) from heartbeats, as
the user API computes them (compat §4), for a whole batch of rows in one statement."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.server import status as st
from edgefleet.server import tables as t
from edgefleet.server.balena.read import Compute, Row, iso
from edgefleet.server.balena.resource import Resource
from edgefleet.server.state import ServerState

BUSY = ("downloading", "installing", "updating", "starting", "stopping", "configuring")


def _poll_config(s: Session, rows: list[Row]) -> dict[int, dict[str, str]]:
    """Each device's poll-interval config variables (device level over fleet level)."""
    fleets = sorted({r["_fleet"] for r in rows})
    found = s.execute(sa.select(t.Variable.fleet_id, t.Variable.device_id, t.Variable.name,
                                t.Variable.value).where(
        t.Variable.kind == "config", t.Variable.name.in_(st.POLL_VARS),
        t.Variable.fleet_id.in_(fleets))).all()
    out: dict[int, dict[str, str]] = {}
    for r in rows:
        conf: dict[str, str] = {}
        for fleet_id, device_id, name, value in sorted(found, key=lambda v: v[1] is not None):
            if fleet_id == r["_fleet"] and device_id in (None, r["id"]):
                conf[name] = value
        out[r["id"]] = conf
    return out


def overall(*, connectivity: str, reported: str, seen: bool) -> str:
    """balena's `overall_status` words from edgefleet's connectivity and the supervisor's
    reported status."""
    if not seen:
        return "configuring"
    if connectivity == "Offline":
        return "disconnected"
    if connectivity in ("Heartbeat Only", "VPN Only"):
        return "reduced-functionality"
    if reported.lower() in BUSY:
        return "updating"
    return "operational"


def device_computer(state: ServerState) -> Compute:
    settings = state.settings

    def compute(s: Session, res: Resource, rows: list[Row]) -> None:
        if res.name != "device":
            return
        config = _poll_config(s, rows)
        now = int(time.time() * 1000)
        for r in rows:
            last = state.seen(r["id"], r.get("_last_seen"))
            timeout = st.heartbeat_timeout_s(
                poll_ms=st.poll_interval_ms(config=config.get(r["id"], {})),
                override_s=settings.heartbeat_timeout_s)
            hb = st.heartbeat_state(last_seen_ms=last, now_ms=now, timeout_s=timeout,
                                    grace_s=settings.offline_grace_s)
            conn = st.overall_status(heartbeat=hb, vpn_connected=bool(r["is_connected_to_vpn"]),
                                     tunnel=settings.tunnel)
            r["status"] = conn
            r["is_online"] = hb in ("online", "timeout")
            r["api_heartbeat_state"] = hb
            r["overall_status"] = overall(connectivity=conn, seen=last is not None,
                                          reported=str(r.get("provisioning_state") or ""))
            r["last_connectivity_event"] = iso(last)
            _metrics(r)

    return compute


def _metrics(r: Row) -> None:
    try:
        reported: dict[str, Any] = json.loads(r.get("_reported") or "{}")
    except ValueError:
        reported = {}
    for name in ("cpu_usage", "cpu_temp", "memory_usage", "memory_total", "storage_usage",
                 "storage_total", "storage_block_device", "cpu_id", "is_undervolted"):
        r.setdefault(name, reported.get(name))
