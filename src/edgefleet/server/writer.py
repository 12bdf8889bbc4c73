"""Group commit: many small writes (state reports, log lines, heartbeats) applied by one
writer in one transaction per batch, each caller waiting until its write is committed.

On SQLite this removes lock contention between threads (one writer, no busy waits) and turns
hundreds of commits into one; on PostgreSQL it saves round trips.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from edgefleet.server.db import Database

log = logging.getLogger(__name__)
Write = Callable[[Session], Any]
GroupWrite = Callable[[Session, list[Any]], None]


class _Grouped:
    """Items written together by one function (e.g. all state reports of a batch)."""

    def __init__(self, fn: GroupWrite, item: Any) -> None:
        self.fn, self.item = fn, item


class BatchWriter:
    """Apply writes in batches of up to `max_batch`; a failing write fails only its caller."""

    def __init__(self, *, db: Database, max_batch: int = 500) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: list[tuple[Write | _Grouped, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit_grouped(self, fn: GroupWrite, item: Any) -> None:
        """Queue an item that `fn` writes together with the other items of the same `fn` in
        the batch (one statement for all); wait until it is committed."""
        await self.submit(_Grouped(fn, item))

    async def submit(self, write: Write | _Grouped) -> Any:
        """Queue a write and wait until it is committed; returns what `write` returned."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((write, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._queue:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            results = await run_in_threadpool(self._apply, [w for w, _ in batch])
            for (_, fut), (ok, value) in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    @staticmethod
    def _run(s: Session, writes: list[Write | _Grouped]) -> list[Any]:
        groups: dict[GroupWrite, list[Any]] = {}
        results: list[Any] = []
        for w in writes:
            if isinstance(w, _Grouped):
                groups.setdefault(w.fn, []).append(w.item)
                results.append(None)
            else:
                results.append(w(s))
        for fn, items in groups.items():
            fn(s, items)
        return results

    def _apply(self, writes: list[Write | _Grouped]) -> list[tuple[bool, Any]]:
        try:
            with self.db.writing() as s:
                return [(True, r) for r in self._run(s, writes)]
        except Exception as exc:
            if len(writes) == 1:
                return [(False, exc)]
        out: list[tuple[bool, Any]] = []  # one failed: find it, commit the others
        for w in writes:
            try:
                with self.db.writing() as s:
                    out.append((True, self._run(s, [w])[0]))
            except Exception as exc:
                log.warning("a batched write failed: %s", exc)
                out.append((False, exc))
        return out

    async def drain(self) -> None:
        """Wait until everything queued so far is written."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
