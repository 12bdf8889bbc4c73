"""`/v1/healthy` semantics (compat §5): target fetches not too old, applies not stuck, and the
reconcile loop still turning."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HealthInput:
    """What health is judged from (all times in ms since the epoch)."""

    now_ms: int
    poll_interval_ms: int
    started_ms: int
    managed: bool
    """Only a managed device (not in local mode) fetches its target from a server."""
    last_fetch_ms: int | None
    apply_started_ms: int | None
    apply_download_ms: int
    """Time of the current apply spent downloading images (not counted against it)."""
    last_loop_ms: int
    loop_running: bool


def health(*, data: HealthInput) -> tuple[bool, str]:
    """(healthy, reason). Unhealthy when the last successful fetch is older than 2 x poll
    interval, when an apply (minus downloads) runs longer than 2 x poll interval, or when the
    reconcile loop has not turned for 2 x poll interval (+ a minute of grace)."""
    limit = 2 * data.poll_interval_ms
    if not data.loop_running:
        return False, "the reconcile loop is not running"
    if data.managed:
        since = data.last_fetch_ms if data.last_fetch_ms is not None else data.started_ms
        if data.now_ms - since > limit:
            return False, (f"no successful target-state fetch for {(data.now_ms - since) // 1000}"
                           f" s (limit {limit // 1000} s)")
    if data.apply_started_ms is not None:
        applying = data.now_ms - data.apply_started_ms - data.apply_download_ms
        if applying > limit:
            return False, (f"an apply has been running for {applying // 1000} s without"
                           f" downloads (limit {limit // 1000} s)")
    elif data.now_ms - data.last_loop_ms > limit + 60_000:
        idle_s = (data.now_ms - data.last_loop_ms) // 1000
        return False, f"the reconcile loop has not run for {idle_s} s"
    return True, "OK"
