"""Device connectivity from heartbeats and the tunnel (compat §4), as pure functions."""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_POLL_MS = 900_000
MIN_HEARTBEAT_S = 600.0
POLL_VARS = ("BALENA_SUPERVISOR_POLL_INTERVAL", "RESIN_SUPERVISOR_POLL_INTERVAL",
             "SUPERVISOR_POLL_INTERVAL")


def poll_interval_ms(*, config: Mapping[str, str]) -> int:
    """The poll interval a device's config variables ask for (ms), or balena's default."""
    for name in POLL_VARS:
        value = config.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return DEFAULT_POLL_MS


def heartbeat_timeout_s(*, poll_ms: int, override_s: float | None) -> float:
    """Seconds without a state GET before the heartbeat times out: 1.5 x max(poll, 10 min)."""
    if override_s is not None:
        return override_s
    return 1.5 * max(poll_ms / 1000, MIN_HEARTBEAT_S)


def heartbeat_state(*, last_seen_ms: int | None, now_ms: int, timeout_s: float,
                    grace_s: float) -> str:
    """`online`, `timeout` (grace period, still counted as alive), `offline` or `unknown`."""
    if last_seen_ms is None:
        return "unknown"
    age = (now_ms - last_seen_ms) / 1000
    if age <= timeout_s:
        return "online"
    if age <= timeout_s + grace_s:
        return "timeout"
    return "offline"


def overall_status(*, heartbeat: str, vpn_connected: bool, tunnel: bool) -> str:
    """Online (both signals), Heartbeat Only, VPN Only, or Offline (neither).

    `tunnel` says whether this server runs a tunnel at all: without one, "Heartbeat Only"
    would flag every healthy device as degraded, so the heartbeat alone makes it Online."""
    alive = heartbeat in ("online", "timeout")
    if not tunnel:
        return "Online" if alive else "Offline"
    if alive and vpn_connected:
        return "Online"
    if alive:
        return "Heartbeat Only"
    if vpn_connected:
        return "VPN Only"
    return "Offline"
