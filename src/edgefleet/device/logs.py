"""The supervisor's log sink: its own events and every container's output, timestamped,
buffered in memory and flushed in batches to the bounded store."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from edgefleet.device.store import Store
from edgefleet.model.secret_names import redact_urls
from edgefleet.model.timeutil import now_ms

_log = logging.getLogger("edgefleet.supervisor")


class LogSink:
    """Collects log lines; `flush()` writes them to the store (called periodically)."""

    def __init__(self, *, store: Store, echo: bool = False, max_pending: int = 5000) -> None:
        self.store = store
        self.echo = echo
        self._pending: deque[dict[str, Any]] = deque(maxlen=max_pending)
        self._dropped = 0
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def system(self, message: str, *, app_uuid: str = "", service: str = "",
               error: bool = False) -> None:
        """A supervisor event ("Installing service 'frontend'"); URL credentials (an
        apiEndpoint with user:password@) are redacted."""
        message = redact_urls(message)
        self._add(message=message, app_uuid=app_uuid, service=service, is_system=True,
                  is_stderr=error, ts_ms=now_ms())
        if self.echo:
            (_log.error if error else _log.info)(message)

    def container(self, message: str, *, app_uuid: str, service: str, is_stderr: bool,
                  ts_ms: int) -> None:
        """A line of a container's stdout or stderr."""
        self._add(message=message, app_uuid=app_uuid, service=service, is_system=False,
                  is_stderr=is_stderr, ts_ms=ts_ms or now_ms())

    def _add(self, **record: Any) -> None:
        if len(self._pending) == self._pending.maxlen:
            self._dropped += 1
        self._pending.append(record)
        for q in list(self.subscribers):
            if q.qsize() < 1000:
                q.put_nowait(record)

    def flush(self) -> None:
        """Write buffered lines to the store."""
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            self._pending.appendleft(dict(message=f"Dropped {dropped} log line(s): log buffer"
                                          " full", app_uuid="", service="", is_system=True,
                                          is_stderr=True, ts_ms=now_ms()))
        batch = list(self._pending)
        self._pending.clear()
        self.store.add_logs(records=batch)

    async def run_flusher(self, *, interval_s: float = 0.5) -> None:
        """Flush forever (a task of the supervisor)."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                self.flush()
        finally:
            self.flush()
