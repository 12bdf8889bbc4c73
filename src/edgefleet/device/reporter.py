"""Sends state reports (PATCH /device/v3/state) as the ReportScheduler allows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from edgefleet.device.cloud import CloudClient, CloudError
from edgefleet.device.logs import LogSink
from edgefleet.device.report import ReportPolicy, ReportScheduler


class Reporter:
    """Reports the difference from the last accepted report, within the limits of compat §3."""

    def __init__(self, *, client: CloudClient, uuid: str, api_key: str,
                 current: Callable[[], dict[str, Any] | None], logs: LogSink | None = None,
                 policy: ReportPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.uuid = uuid
        self.api_key = api_key
        self.current = current
        self.logs = logs
        self.scheduler = ReportScheduler(policy=policy or ReportPolicy())
        self.clock = clock
        self.sent = 0
        self.last_error = ""

    def set_backoff_cap(self, *, cap_s: float) -> None:
        """Failures back off up to the poll interval."""
        if cap_s != self.scheduler.policy.backoff_cap_s:
            p = self.scheduler.policy
            self.scheduler.policy = ReportPolicy(
                min_interval_s=p.min_interval_s, metrics_interval_s=p.metrics_interval_s,
                backoff_base_s=p.backoff_base_s, backoff_cap_s=cap_s)

    async def tick(self) -> dict[str, Any] | None:
        """Send a report if one is due; returns what was sent (None: nothing was due or the
        server did not take it)."""
        now = self.clock()
        if self.scheduler.blocked(now_s=now):
            return None  # not even worth building the report
        current = self.current()
        if current is None:
            return None
        diff = self.scheduler.due(current=current, now_s=now)
        if diff is None:
            return None
        try:
            await self.client.patch_state(api_key=self.api_key, report={self.uuid: diff})
        except CloudError as exc:
            delay = self.scheduler.failed(now_s=now, retry_after_s=exc.retry_after_s)
            if self.logs is not None and (self.scheduler.failures == 1 or str(exc) !=
                                          self.last_error):
                self.logs.system(f"Cannot report the device state, retrying in {delay:.0f}s:"
                                 f" {exc}", error=True)
            self.last_error = str(exc)
            return None
        self.scheduler.sent(diff=diff, now_s=now)
        self.sent += 1
        self.last_error = ""
        return diff

    async def run(self, *, tick_s: float = 1.0) -> None:
        """Look for something to report every `tick_s`, forever."""
        while True:
            await self.tick()
            await asyncio.sleep(tick_s)
