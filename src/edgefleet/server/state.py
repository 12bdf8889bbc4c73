"""What one API process holds in memory: caches of keys and targets, heartbeats, log waiters.

The hot path of a conditional poll touches only this (no database): the key and the rendered
target are cached until the database's `generation` changes; heartbeats are kept here and
written to the database in batches. Several processes can share one PostgreSQL: each notices
another's change within `cache_refresh_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.settings import ServerSettings
from edgefleet.server.target import RenderedTarget, device_target, render

log = logging.getLogger(__name__)


@dataclass
class ServerState:
    """Shared per-process state of the server app."""

    settings: ServerSettings
    db: Database
    generation: int = 0
    key_cache: dict[str, tuple[int, keys.Principal]] = field(default_factory=dict)
    targets: dict[int, RenderedTarget] = field(default_factory=dict)
    last_seen: dict[int, int] = field(default_factory=dict)
    log_events: dict[int, asyncio.Event] = field(default_factory=dict)
    _dirty: dict[int, int] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    # --- generation ------------------------------------------------------------------------
    def refresh_generation(self) -> None:
        """Read the database's generation (after a write, or periodically)."""
        gen = self.db.generation()
        if gen != self.generation:
            self.generation = gen
            self.key_cache.clear()

    # --- keys ------------------------------------------------------------------------------
    def principal_sync(self, key: str) -> keys.Principal | None:
        hit = self.key_cache.get(key)
        if hit is not None and hit[0] == self.generation:
            return hit[1]
        gen = self.generation
        with self.db.session() as s:
            principal = keys.lookup(s, key=key)
        if principal is not None:
            if len(self.key_cache) > 200_000:
                self.key_cache.clear()
            self.key_cache[key] = (gen, principal)
        return principal

    async def principal(self, header: str | None) -> keys.Principal | None:
        """Who holds the bearer key of `header` (cached; a miss goes to the database)."""
        key = keys.bearer(header)
        if key is None:
            return None
        hit = self.key_cache.get(key)
        if hit is not None and hit[0] == self.generation:
            return hit[1]
        return await run_in_threadpool(self.principal_sync, key)

    # --- targets ---------------------------------------------------------------------------
    def target_sync(self, device_id: int) -> RenderedTarget | None:
        gen = self.generation
        with self.db.session() as s:
            device = s.get(t.Device, device_id)
            if device is None:
                return None
            rendered = render(document=device_target(s, device=device), generation=gen)
        self.targets[device_id] = rendered
        return rendered

    async def target(self, device_id: int) -> RenderedTarget | None:
        """The rendered target of a device, from the cache while the generation holds."""
        hit = self.targets.get(device_id)
        if hit is not None and hit.generation == self.generation:
            return hit
        return await run_in_threadpool(self.target_sync, device_id)

    # --- heartbeats ------------------------------------------------------------------------
    def heartbeat(self, device_id: int, now_ms: int) -> None:
        self.last_seen[device_id] = now_ms
        self._dirty[device_id] = now_ms

    def seen(self, device_id: int, stored_ms: int | None) -> int | None:
        """The newest last-seen time: this process's memory or the database's."""
        mem = self.last_seen.get(device_id)
        if mem is None:
            return stored_ms
        return max(mem, stored_ms or 0)

    def flush_heartbeats(self) -> None:
        """Write last-seen times held in memory to the database, in one batch."""
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, {}
        with self.db.session() as s:
            s.execute(sa.update(t.Device), [{"id": k, "last_seen_ms": v}
                                             for k, v in batch.items()])

    # --- logs ------------------------------------------------------------------------------
    def log_event(self, device_id: int) -> asyncio.Event:
        ev = self.log_events.get(device_id)
        if ev is None:
            ev = self.log_events[device_id] = asyncio.Event()
        return ev

    def notify_logs(self, device_id: int) -> None:
        ev = self.log_events.pop(device_id, None)
        if ev is not None:
            ev.set()

    # --- background ------------------------------------------------------------------------
    async def _every(self, seconds: float, fn: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await run_in_threadpool(getattr(self, fn))
            except Exception:  # keep serving; the next round retries
                log.exception("background %s failed", fn)

    def start(self) -> None:
        self.refresh_generation()
        self._tasks = [
            asyncio.create_task(self._every(self.settings.cache_refresh_s, "refresh_generation")),
            asyncio.create_task(self._every(self.settings.heartbeat_flush_s, "flush_heartbeats")),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(self.flush_heartbeats)
