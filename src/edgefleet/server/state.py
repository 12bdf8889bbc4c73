"""What one API process holds in memory: caches of keys and targets, heartbeats, log waiters.

The hot path of a conditional poll touches only this (no database): the key and the rendered
target are cached until the database's generations change; heartbeats are kept here and
written to the database in batches. Several processes can share one PostgreSQL: each notices
another's change within `cache_refresh_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from edgefleet.model.timeutil import now_ms
from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.push_slots import PushSlots
from edgefleet.server.settings import ServerSettings
from edgefleet.server.target import (
    FleetView,
    RenderedTarget,
    device_row,
    fleet_view,
    render_device,
    render_shared,
)
from edgefleet.server.writer import BatchWriter

log = logging.getLogger(__name__)
KEY_CACHE_MAX = 200_000


def _unexpired(principal: keys.Principal) -> keys.Principal | None:
    """A cached user token stops working when it expires (no database read needed)."""
    if isinstance(principal, keys.UserPrincipal) and principal.expired(now_ms()):
        return None
    return principal


@dataclass
class ServerState:
    """Shared per-process state of the server app."""

    settings: ServerSettings
    db: Database
    generation: int = 0
    """Grows whenever any target may have changed (release, pin, variable, name)."""
    key_generation: int = 0
    """Grows whenever a key was revoked (device or fleet removed)."""
    key_cache: dict[str, tuple[int, keys.Principal]] = field(default_factory=dict)
    targets: dict[int, RenderedTarget] = field(default_factory=dict)
    fleets: dict[int, tuple[int, FleetView]] = field(default_factory=dict)
    last_seen: dict[int, int] = field(default_factory=dict)
    log_events: dict[int, asyncio.Event] = field(default_factory=dict)
    pushes: PushSlots = field(default_factory=PushSlots)
    """The pushes running now (`server/push_slots.py`)."""
    writer: BatchWriter = field(init=False)
    _dirty: dict[int, int] = field(default_factory=dict)
    _view_lock: threading.Lock = field(default_factory=threading.Lock)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.writer = BatchWriter(db=self.db)

    # --- generations -----------------------------------------------------------------------
    def refresh_generation(self) -> None:
        """Read the database's generations (after a write, or periodically)."""
        self.generation, self.key_generation = self.db.generations()

    # --- keys ------------------------------------------------------------------------------
    def principal_sync(self, key: str) -> keys.Principal | None:
        hit = self.key_cache.get(key)
        if hit is not None and hit[0] == self.key_generation:
            return _unexpired(hit[1])
        gen = self.key_generation
        with self.db.session() as s:
            principal = keys.lookup(s, key=key)
        if principal is not None:
            if len(self.key_cache) > KEY_CACHE_MAX:
                self.key_cache.clear()
            self.key_cache[key] = (gen, principal)
        return principal

    async def principal(self, header: str | None) -> keys.Principal | None:
        """Who holds the bearer key of `header` (cached; a miss goes to the database)."""
        key = keys.bearer(header)
        if key is None:
            return None
        hit = self.key_cache.get(key)
        if hit is not None and hit[0] == self.key_generation:
            return _unexpired(hit[1])
        return await run_in_threadpool(self.principal_sync, key)

    # --- targets ---------------------------------------------------------------------------
    def target_sync(self, device_id: int, fleet_id: int) -> RenderedTarget | None:
        gen = self.generation
        with self.db.session() as s:
            hit = self.fleets.get(fleet_id)
            if hit is None or hit[0] != gen:
                with self._view_lock:  # one thread reads a fleet; the others wait and reuse
                    hit = self.fleets.get(fleet_id)
                    if hit is None or hit[0] != gen:
                        view = fleet_view(s, fleet_id=fleet_id)
                        if view is None:
                            return None
                        self.fleets[fleet_id] = hit = (gen, view)
            device = hit[1].devices.get(device_id) or device_row(s, device_id=device_id)
            if device is None or device.fleet_id != fleet_id:
                return None
            rendered = render_device(s, device=device, view=hit[1], generation=gen)
        self.targets[device_id] = rendered
        return rendered

    def cached_target(self, device_id: int, fleet_id: int) -> RenderedTarget | None:
        """The target from memory only: cached, or rendered from the fleet's cached shared
        parts (no database, no thread); None when the database is needed."""
        hit = self.targets.get(device_id)
        if hit is not None and hit.generation == self.generation:
            return hit
        view = self.fleets.get(fleet_id)
        if view is None or view[0] != self.generation:
            return None
        device = view[1].devices.get(device_id)
        if device is None:
            return None
        rendered = render_shared(device=device, view=view[1], generation=self.generation)
        if rendered is not None:
            self.targets[device_id] = rendered
        return rendered

    async def target(self, device_id: int, fleet_id: int) -> RenderedTarget | None:
        """The rendered target of a device, from memory while the generation holds."""
        hit = self.cached_target(device_id, fleet_id)
        if hit is not None:
            return hit
        return await run_in_threadpool(self.target_sync, device_id, fleet_id)

    def _poll_sync(self, key: str, uuid: str) -> tuple[keys.Principal | None,
                                                       RenderedTarget | None]:
        principal = self.principal_sync(key)
        if isinstance(principal, keys.DevicePrincipal) and principal.uuid == uuid:
            hit = self.targets.get(principal.device_id)
            if hit is None or hit.generation != self.generation:
                hit = self.target_sync(principal.device_id, principal.fleet_id)
            return principal, hit
        return principal, None

    async def poll(self, header: str | None, uuid: str) -> tuple[keys.Principal | None,
                                                                  RenderedTarget | None]:
        """Who polls and the target for `uuid` if it is that device (one thread hop at most)."""
        key = keys.bearer(header)
        if key is None:
            return None, None
        hit = self.key_cache.get(key)
        if hit is not None and hit[0] == self.key_generation:
            principal = hit[1]
            if not isinstance(principal, keys.DevicePrincipal) or principal.uuid != uuid:
                return principal, None
            return principal, await self.target(principal.device_id, principal.fleet_id)
        return await run_in_threadpool(self._poll_sync, key, uuid)

    # --- heartbeats ------------------------------------------------------------------------
    @staticmethod
    def clock_ms() -> int:
        return now_ms()

    def heartbeat(self, device_id: int, now_ms: int) -> None:
        self.last_seen[device_id] = now_ms
        self._dirty[device_id] = now_ms

    def seen(self, device_id: int, stored_ms: int | None) -> int | None:
        """The newest last-seen time: this process's memory or the database's."""
        mem = self.last_seen.get(device_id)
        if mem is None:
            return stored_ms
        return max(mem, stored_ms or 0)

    async def flush_heartbeats(self) -> None:
        """Write last-seen times held in memory to the database, in one batch."""
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, {}
        rows = [{"k": k, "seen": v} for k, v in batch.items()]
        stmt = sa.update(t.Device).where(t.Device.id == sa.bindparam("k")).values(
            last_seen_ms=sa.bindparam("seen"))  # devices removed meanwhile are simply skipped
        await self.writer.submit(lambda s: s.connection().execute(stmt, rows))

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
    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cache_refresh_s)
            try:
                await run_in_threadpool(self.refresh_generation)
            except Exception:  # keep serving; the next round retries
                log.exception("reading the generations failed")

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_flush_s)
            try:
                await self.flush_heartbeats()
            except Exception:
                log.exception("writing heartbeats failed")

    def start(self) -> None:
        self.refresh_generation()
        self._tasks = [asyncio.create_task(self._refresh_loop()),
                       asyncio.create_task(self._heartbeat_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush_heartbeats()
        await self.writer.drain()
