"""The current-state report (PATCH /device/v3/state, compat §3): what goes in it, what changed
since the last accepted report, and when the next one may be sent. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgefleet.device.store import AppRecord, ImageRecord
from edgefleet.model.engine_state import EngineState
from edgefleet.model.target import TargetState
from edgefleet.model.timeutil import backoff_s

METRIC_KEYS = frozenset({"cpu_usage", "cpu_temp", "cpu_id", "memory_usage", "memory_total",
                         "storage_block_device", "storage_usage", "storage_total",
                         "is_undervolted"})
"""Fields that change all the time: a report of these alone goes at most every 5 minutes."""

CONTAINER_STATUS = {"running": "Running", "created": "Installed", "exited": "exited",
                    "dead": "Dead", "paused": "paused", "restarting": "restarting",
                    "removing": "removing"}


@dataclass(frozen=True)
class ReportPolicy:
    """compat §3's limits: one report per 10 s, metrics alone every 5 min, failures back off
    15 s doubling up to the poll interval, Retry-After honoured."""

    min_interval_s: float = 10.0
    metrics_interval_s: float = 300.0
    backoff_base_s: float = 15.0
    backoff_cap_s: float = 900.0


def _services_of(app_uuid: str, commit: str, observed: EngineState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in observed.containers:
        parts = c.name_parts
        if c.app_uuid == app_uuid and parts is not None and parts.commit == commit:
            out[c.service_name] = {"image": c.image,
                                   "status": CONTAINER_STATUS.get(c.status, c.status)}
    return out


def apps_report(*, target: TargetState | None, apps: Iterable[AppRecord],
                images: Iterable[ImageRecord], observed: EngineState) -> dict[str, Any]:
    """`apps: {<appUuid>: {release_uuid, releases: {<commit>: {update_status, services}}}}`:
    the target release with each service's container or image status and the app's update
    status, and any older release whose containers are still there (without an update_status,
    so a server never takes it for the one that is done)."""
    records = {a.uuid: a for a in apps}
    by_ref = {i.ref: i for i in images}
    out: dict[str, Any] = {}
    wanted = target.device.apps if target is not None else {}
    app_uuids = set(wanted) | {c.app_uuid for c in observed.containers if c.app_uuid}
    for app_uuid in sorted(app_uuids):
        releases: dict[str, Any] = {}
        record = records.get(app_uuid)
        app = wanted.get(app_uuid)
        chosen = app.release if app is not None else None
        target_commit = chosen[0] if chosen else None
        if chosen is not None:
            commit, release = chosen
            services = _services_of(app_uuid, commit, observed)
            for name, svc in release.services.items():
                if name in services:
                    continue
                img = by_ref.get(svc.image)
                if img is not None and img.status == "Downloading":
                    pct = 100 * img.downloaded // img.total if img.total else 0
                    services[name] = {"image": svc.image, "status": "Downloading",
                                      "download_progress": pct}
                elif img is not None and img.status == "Downloaded":
                    services[name] = {"image": svc.image, "status": "Downloaded"}
                else:
                    services[name] = {"image": svc.image, "status": "Installing"}
            status = (record.update_status if record is not None and record.commit == commit
                      else "downloading")
            releases[commit] = {"update_status": status, "services": services}
        running_commits: dict[str, int] = {}
        for c in observed.containers:
            parts = c.name_parts
            if c.app_uuid != app_uuid or parts is None or parts.commit == target_commit:
                continue
            running_commits[parts.commit] = running_commits.get(parts.commit, 0) + 1
            if parts.commit not in releases:  # being replaced: no update_status of its own
                releases[parts.commit] = {"services": _services_of(app_uuid, parts.commit,
                                                                   observed)}
        done = target_commit is not None and releases[target_commit]["update_status"] == "done"
        entry: dict[str, Any] = {"releases": releases}
        if done:
            entry["release_uuid"] = target_commit
        elif running_commits:
            entry["release_uuid"] = max(running_commits, key=lambda k: running_commits[k])
        out[app_uuid] = entry
    return out


def device_report(*, app_state: str, apps: Mapping[str, Any], info: Mapping[str, Any],
                  metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The full report of one device (the value under its uuid), before diffing."""
    return {"status": "Idle" if app_state == "applied" else "Updating", **info, **metrics,
            "apps": dict(apps)}


def report_diff(*, accepted: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `current` that differ from the last accepted report (`apps` whole)."""
    return {k: v for k, v in current.items() if k not in accepted or accepted[k] != v}


@dataclass
class ReportScheduler:
    """Decides what to send and when, given the clock; remembers the last accepted report."""

    policy: ReportPolicy = field(default_factory=ReportPolicy)
    accepted: dict[str, Any] = field(default_factory=dict)
    last_attempt_s: float | None = None
    last_metrics_s: float | None = None
    failures: int = 0
    not_before_s: float = 0.0

    def blocked(self, *, now_s: float) -> bool:
        """True while no report may go out whatever changed (backoff or the 10 s limit)."""
        return now_s < self.not_before_s or (self.last_attempt_s is not None and (
            now_s - self.last_attempt_s < self.policy.min_interval_s))

    def due(self, *, current: Mapping[str, Any], now_s: float) -> dict[str, Any] | None:
        """The diff to send now, or None (nothing changed, or a limit says wait)."""
        if self.blocked(now_s=now_s):
            return None
        diff = report_diff(accepted=self.accepted, current=current)
        if not diff:
            return None
        if set(diff) <= METRIC_KEYS and self.last_metrics_s is not None and (
                now_s - self.last_metrics_s < self.policy.metrics_interval_s):
            return None
        return diff

    def sent(self, *, diff: Mapping[str, Any], now_s: float) -> None:
        """The server accepted `diff`."""
        self.last_attempt_s = now_s
        self.accepted.update(diff)
        if set(diff) & METRIC_KEYS:
            self.last_metrics_s = now_s
        self.failures = 0
        self.not_before_s = 0.0

    def failed(self, *, now_s: float, retry_after_s: float | None = None) -> float:
        """The report failed: back off 15 s, 30 s, ... up to the cap (at least Retry-After).
        Returns the delay."""
        self.last_attempt_s = now_s
        self.failures += 1
        delay = backoff_s(self.failures - 1, base_s=self.policy.backoff_base_s,
                          cap_s=self.policy.backoff_cap_s)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        self.not_before_s = now_s + delay
        return delay
