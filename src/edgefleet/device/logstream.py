"""Log streaming to the fleet server (POST /device/v2/:uuid/log-stream, a long-lived NDJSON
upload): lines from the supervisor's LogSink wait in a bounded buffer until the server confirms
them; while offline the oldest are dropped and the next upload starts with a system line saying
how many."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from edgefleet.device.cloud import CloudClient, CloudError
from edgefleet.device.logs import LogSink
from edgefleet.device.supervisor_state import backoff_s
from edgefleet.device.tasks import cancel_and_wait
from edgefleet.model.timeutil import now_ms

BUFFER_LINES = 10_000
BATCH_LINES = 500


def to_wire(*, record: dict[str, Any], service_id: int | None) -> dict[str, Any]:
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
    """A bounded FIFO of log lines that counts what it had to drop. Lines stay until the
    server confirmed them (`delivered`), so a broken upload loses nothing."""

    def __init__(self, *, limit: int = BUFFER_LINES) -> None:
        self.limit = limit
        self._lines: deque[tuple[int, dict[str, Any]]] = deque()
        self._seq = 0
        self.inflight_seq = 0
        """Lines up to this sequence number were handed to an upload in progress."""
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: dict[str, Any]) -> None:
        """Append; when full the oldest line goes (counted unless it was already sent)."""
        if len(self._lines) >= self.limit:
            seq, _ = self._lines.popleft()
            if seq > self.inflight_seq:
                self.dropped += 1
        self._seq += 1
        self._lines.append((self._seq, line))

    def peek(self, *, count: int, now_ms: int) -> Batch:
        """The next batch to send (not yet removed); it starts with "N messages dropped while
        offline" when lines were dropped since the last batch was delivered."""
        batch = self.after(seq=0, count=count)
        if self.dropped:
            notice = {"message": f"{self.dropped} messages dropped while offline",
                      "timestamp": now_ms, "isSystem": True, "isStdErr": True}
            return Batch(lines=[notice, *batch.lines], upto_seq=batch.upto_seq,
                         dropped=self.dropped)
        return batch

    def after(self, *, seq: int, count: int) -> Batch:
        """Up to `count` lines newer than `seq` (no drop notice)."""
        picked = [(n, line) for n, line in self._lines if n > seq][:count]
        upto = picked[-1][0] if picked else max(seq, self._lines[-1][0] if self._lines
                                                else self._seq)
        return Batch(lines=[line for _, line in picked], upto_seq=upto, dropped=0)

    def delivered(self, batch: Batch) -> None:
        """The server took everything up to `batch`: forget it and the drops it reported."""
        while self._lines and self._lines[0][0] <= batch.upto_seq:
            self._lines.popleft()
        self.dropped -= min(batch.dropped, self.dropped)


class LogStreamer:
    """Moves lines from a LogSink to the server over a long-lived NDJSON upload (restarted
    every `max_stream_s`, or after `idle_end_s` without lines), holding them while offline.

    Lines are confirmed when an upload ends with 2xx; after a broken upload they are sent
    again (the server may then have some twice: at least once beats at most once here)."""

    def __init__(self, *, logs: LogSink, client: CloudClient, uuid: str, api_key: str,
                 service_id: Callable[[str, str], int | None],
                 buffer: OfflineBuffer | None = None, max_delay_s: float = 60.0,
                 max_stream_s: float = 60.0, idle_end_s: float = 10.0) -> None:
        self.logs = logs
        self.client = client
        self.uuid = uuid
        self.api_key = api_key
        self.service_id = service_id
        self.buffer = buffer if buffer is not None else OfflineBuffer()
        self.max_delay_s = max_delay_s
        self.max_stream_s = max_stream_s
        self.idle_end_s = idle_end_s
        self.failures = 0
        self.sent_lines = 0
        self.uploads = 0
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._arrived = asyncio.Event()
        self._finishing = False
        logs.subscribers.add(self._queue)

    def finish(self) -> None:
        """Send what is left, end the upload cleanly, and stop (at shutdown)."""
        self._finishing = True
        self._arrived.set()

    def close(self) -> None:
        """Stop receiving lines from the sink."""
        self.logs.subscribers.discard(self._queue)

    def _drain(self) -> None:
        while True:
            try:
                record = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self.buffer.add(to_wire(record=record, service_id=self.service_id(
                record.get("app_uuid", ""), record.get("service", ""))))

    async def _pump(self) -> None:
        while True:
            record = await self._queue.get()
            self.buffer.add(to_wire(record=record, service_id=self.service_id(
                record.get("app_uuid", ""), record.get("service", ""))))
            self._drain()
            self._arrived.set()

    async def _body(self, sent: list[Batch]) -> AsyncIterator[bytes]:
        """The upload: what is buffered, then new lines as they come, until time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_stream_s
        self._drain()
        batch = self.buffer.peek(count=BATCH_LINES, now_ms=now_ms())
        while True:
            self.buffer.inflight_seq = batch.upto_seq
            sent.append(batch)
            if batch.lines:
                yield "".join(json.dumps(x, separators=(",", ":")) + "\n"
                              for x in batch.lines).encode()
            self._arrived.clear()  # before looking, so a line added meanwhile wakes us
            self._drain()
            batch = self.buffer.after(seq=batch.upto_seq, count=BATCH_LINES)
            if batch.lines:
                continue
            if self._finishing:
                return
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=min(left,
                                                                         self.idle_end_s))
            except TimeoutError:
                return
            self._drain()
            batch = self.buffer.after(seq=sent[-1].upto_seq, count=BATCH_LINES)

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        """Send forever (after `ready` is set: until then lines only collect); failures back
        off exponentially up to `max_delay_s`."""
        pump = asyncio.create_task(self._pump())
        try:
            if ready is not None:
                await ready.wait()
            while True:
                self._arrived.clear()
                self._drain()
                if not len(self.buffer) and not self.buffer.dropped:
                    if self._finishing:
                        return
                    await self._arrived.wait()
                    continue
                sent: list[Batch] = []
                try:
                    await self.client.stream_logs(uuid=self.uuid, api_key=self.api_key,
                                                  body=self._body(sent))
                except CloudError as exc:
                    self.buffer.inflight_seq = 0
                    if self._finishing:
                        return  # shutting down: no retries
                    self.failures += 1
                    delay = max(backoff_s(failures=self.failures, cap_s=self.max_delay_s),
                                exc.retry_after_s or 0.0)
                    await asyncio.sleep(delay)
                    continue
                self.failures = 0
                self.uploads += 1
                if sent:
                    self.buffer.delivered(Batch(lines=[], upto_seq=sent[-1].upto_seq,
                                                dropped=sent[0].dropped))
                self.sent_lines += sum(len(b.lines) for b in sent)
                self.buffer.inflight_seq = 0
        finally:
            await cancel_and_wait(pump)
            self.close()
