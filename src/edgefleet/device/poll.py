"""Target-state polling (GET /device/v3/:uuid/state with If-None-Match): at the poll interval
with jitter, backing off on failure, at once when asked; a new target goes to the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

from edgefleet.device.cloud import CloudClient, CloudError
from edgefleet.device.supervisor import Supervisor
from edgefleet.device.supervisor_state import backoff_s
from edgefleet.device.targets import TargetSource
from edgefleet.model import formats
from edgefleet.model.config import POLL_MAX_MS, POLL_MIN_MS
from edgefleet.model.errors import InvalidInput
from edgefleet.model.target import TargetState
from edgefleet.model.timeutil import now_ms

POLL_VARS = ("BALENA_SUPERVISOR_POLL_INTERVAL", "RESIN_SUPERVISOR_POLL_INTERVAL",
             "SUPERVISOR_POLL_INTERVAL")
JITTER = 0.1
"""Polls come up to 10 % early, so a fleet started together spreads out."""


def poll_interval_s(*, default_s: float, target: TargetState | None) -> float:
    """The (BALENA_/RESIN_)SUPERVISOR_POLL_INTERVAL config variable (ms) when set and valid,
    else config.json's appUpdatePollInterval."""
    config = target.device.config if target is not None else {}
    for name in POLL_VARS:
        value = config.get(name, "").strip()
        if value.isdigit() and POLL_MIN_MS <= int(value) <= POLL_MAX_MS:
            return int(value) / 1000
    return default_s


def next_delay_s(*, interval_s: float, failures: int, rand: float) -> float:
    """After a success: the interval less up to 10 % jitter; after n failures: the
    supervisor's backoff (500 ms doubling, capped at the interval), also jittered."""
    if failures:
        return backoff_s(failures=failures, cap_s=interval_s) * (1 - JITTER * rand)
    return interval_s * (1 - JITTER * rand)


EXPECT_RETRY_S = 0.5
EXPECT_TRIES = 5
"""Polls again after 0.5, 1, 2, 4 and 8 s while the announced target has not come back (a
server process's cache follows the database within `cache_refresh_s`, 1 s by default)."""


class Poller:
    """Fetches this device's target state and hands changes to the supervisor."""

    def __init__(self, *, supervisor: Supervisor, client: CloudClient, uuid: str, api_key: str,
                 default_interval_s: float, rand: Callable[[], float] = random.random,
                 expect_retry_s: float = EXPECT_RETRY_S) -> None:
        self.supervisor = supervisor
        self.client = client
        self.uuid = uuid
        self.api_key = api_key
        self.default_interval_s = default_interval_s
        self.rand = rand
        self.etag: str | None = None
        self.failures = 0
        self.polls = 0
        self.not_modified = 0
        self._now = asyncio.Event()
        self._expect: str | None = None
        """The ETag the server announced (tunnel "poll now"), until a poll returns it."""
        self._expect_tries = 0
        self.expect_retry_s = expect_retry_s

    @property
    def interval_s(self) -> float:
        return poll_interval_s(default_s=self.default_interval_s, target=self.supervisor.target)

    def poll_now(self, expect: str | None = None) -> None:
        """Poll at once (POST /v1/update, or the server's "poll now" with the ETag of the new
        target: then poll again, briefly, until that is what comes back — with several server
        processes, the one answering may not have seen the change yet)."""
        if expect is not None and expect != self.etag:
            self._expect, self._expect_tries = expect, 0
        self._now.set()

    def _expect_delay(self, delay: float) -> float:
        """The delay before the next poll while an announced target has not come back."""
        if self._expect is None:
            return delay
        if self.etag == self._expect or self._expect_tries >= EXPECT_TRIES:
            self._expect = None
            return delay
        self._expect_tries += 1
        return min(delay, self.expect_retry_s * 2.0 ** (self._expect_tries - 1))

    async def poll_once(self) -> bool:
        """One conditional GET; True when a new target was adopted. Raises CloudError."""
        fetch = await self.client.get_target(uuid=self.uuid, api_key=self.api_key,
                                             etag=self.etag)
        self.polls += 1
        self.supervisor.state.last_fetch_ms = now_ms()
        if fetch.document is None:
            self.not_modified += 1
            return False
        logs = self.supervisor.logs
        try:
            target = formats.parse_v3(data=fetch.document, device_uuid=self.uuid)
        except InvalidInput as exc:
            logs.system(f"Rejected target state from the cloud: {exc}", error=True)
            self.etag = fetch.etag  # do not fetch (and reject) the same document again
            return False
        current = self.supervisor.target
        self.etag = fetch.etag
        if current is not None and current.to_wire() == target.to_wire():
            return False
        before = self.interval_s
        try:
            self.supervisor.set_target(target=target, source=TargetSource.CLOUD)
        except InvalidInput:
            return False  # logged by the supervisor; the last good target stays
        if self.interval_s != before:
            logs.system(f"Poll interval is now {self.interval_s:g}s")
        return True

    async def run(self) -> None:
        """Poll forever."""
        while True:
            self._now.clear()
            try:
                await self.poll_once()
            except Exception as exc:  # a bug or an odd answer must not end polling
                self.failures += 1
                retry_after = (exc.retry_after_s or 0.0) if isinstance(exc, CloudError) else 0.0
                if self.failures == 1 or self.failures % 10 == 0:
                    self.supervisor.logs.system(f"Cannot fetch the target state (attempt"
                                                f" {self.failures}): {exc}", error=True)
                delay = max(retry_after, next_delay_s(
                    interval_s=self.interval_s, failures=self.failures, rand=self.rand()))
            else:
                self.failures = 0
                delay = self._expect_delay(next_delay_s(interval_s=self.interval_s,
                                                        failures=0, rand=self.rand()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._now.wait(), timeout=delay)
