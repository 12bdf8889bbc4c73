"""Log streaming to the fleet server (POST /device/v2/:uuid/log-stream, NDJSON): lines from the
supervisor's LogSink wait in a bounded buffer until the server takes them; while offline the
oldest are dropped and the next batch starts with a system line saying how many."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgefleet.device.cloud import CloudClient, CloudError
from edgefleet.device.logs import LogSink
from edgefleet.device.store import now_ms
from edgefleet.device.supervisor import backoff_s

BUFFER_LINES = 10_000
BATCH_LINES = 500


def to_wire(record: dict[str, Any], *, service_id: int | None) -> dict[str, Any]:
    """A LogSink record → balena's log line `{message, timestamp, isSystem, isStdErr,
    serviceId?}` (plus `serviceName` so a server can show it without a lookup)."""
    line: dict[str, Any] = {"message": record["message"], "timestamp": record["ts_ms"],
                            "isSystem": bool(record["is_system"]),
                            "isStdErr": bool(record["is_stderr"])}
    if service_id is not None:
        line["serviceId"] = service_id
    if record.get("service") and not record["is_system"]:
        line["serviceName"] = record["service"]
    return line


@dataclass(frozen=True)
class Batch:
    """Lines to send, and what delivering them settles."""

    lines: list[dict[str, Any]]
    upto_seq: int
    dropped: int


class OfflineBuffer:
    """A bounded FIFO of log lines that counts what it had to drop."""

    def __init__(self, *, limit: int = BUFFER_LINES) -> None:
        self.limit = limit
        self._lines: deque[tuple[int, dict[str, Any]]] = deque()
        self._seq = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: dict[str, Any]) -> None:
        """Append; when full the oldest line goes and is counted."""
        if len(self._lines) >= self.limit:
            self._lines.popleft()
            self.dropped += 1
        self._seq += 1
        self._lines.append((self._seq, line))

    def peek(self, *, count: int, now_ms: int) -> Batch:
        """The next batch to send (not yet removed); it starts with "N messages dropped while
        offline" when lines were dropped since the last batch was delivered."""
        head = [self._lines[i] for i in range(min(count, len(self._lines)))]
        lines = [line for _, line in head]
        if self.dropped:
            lines.insert(0, {"message": f"{self.dropped} messages dropped while offline",
                             "timestamp": now_ms, "isSystem": True, "isStdErr": True})
        return Batch(lines=lines, upto_seq=head[-1][0] if head else 0, dropped=self.dropped)

    def delivered(self, batch: Batch) -> None:
        """The server took `batch`: forget its lines and the drops it reported."""
        while self._lines and self._lines[0][0] <= batch.upto_seq:
            self._lines.popleft()
        self.dropped -= min(batch.dropped, self.dropped)


class LogStreamer:
    """Moves lines from a LogSink to the server in batches, holding them while offline."""

    def __init__(self, *, logs: LogSink, client: CloudClient, uuid: str, api_key: str,
                 service_id: Callable[[str, str], int | None],
                 buffer: OfflineBuffer | None = None, max_delay_s: float = 60.0,
                 linger_s: float = 0.5) -> None:
        self.logs = logs
        self.client = client
        self.uuid = uuid
        self.api_key = api_key
        self.service_id = service_id
        self.buffer = buffer if buffer is not None else OfflineBuffer()
        self.max_delay_s = max_delay_s
        self.linger_s = linger_s
        self.failures = 0
        self.sent_lines = 0
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._arrived = asyncio.Event()
        logs.subscribers.add(self._queue)

    def close(self) -> None:
        """Stop receiving lines from the sink."""
        self.logs.subscribers.discard(self._queue)

    def _drain(self) -> None:
        while True:
            try:
                record = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self.buffer.add(to_wire(record, service_id=self.service_id(
                record.get("app_uuid", ""), record.get("service", ""))))

    async def _pump(self) -> None:
        while True:
            record = await self._queue.get()
            self.buffer.add(to_wire(record, service_id=self.service_id(
                record.get("app_uuid", ""), record.get("service", ""))))
            self._drain()
            self._arrived.set()

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        """Send forever (after `ready` is set: until then lines only collect); failures back
        off exponentially up to `max_delay_s`."""
        pump = asyncio.create_task(self._pump())
        try:
            if ready is not None:
                await ready.wait()
            while True:
                if not len(self.buffer) and not self.buffer.dropped:
                    self._arrived.clear()
                    await self._arrived.wait()
                    await asyncio.sleep(self.linger_s)  # gather a batch
                self._drain()
                batch = self.buffer.peek(count=BATCH_LINES, now_ms=now_ms())
                try:
                    await self.client.send_logs(uuid=self.uuid, api_key=self.api_key,
                                                lines=batch.lines)
                except CloudError as exc:
                    self.failures += 1
                    delay = max(backoff_s(failures=self.failures, cap_s=self.max_delay_s),
                                exc.retry_after_s or 0.0)
                    await asyncio.sleep(delay)
                    continue
                self.failures = 0
                self.buffer.delivered(batch)
                self.sent_lines += len(batch.lines)
        finally:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
            self.close()
