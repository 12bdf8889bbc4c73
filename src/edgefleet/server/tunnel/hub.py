"""The tunnel hub: which devices hold a live tunnel to this process, opening streams to them,
and telling them to poll at once when their target changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from edgefleet.server import tables as t
from edgefleet.server.db import Database
from edgefleet.server.keys import DevicePrincipal
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel import audit
from edgefleet.tunnel.mux import Mux, Transport
from edgefleet.tunnel.stream import Stream

log = logging.getLogger(__name__)
IDLE_LIMIT_S = 75.0
"""A link from which nothing (not even a ping) arrived for this long is closed."""
WATCH_S = 0.2
"""How often the hub looks for target changes to announce."""
PROBE_S = 10.0
"""How often the hub checks that the other server processes named as tunnel holders in the
database still answer (a process that crashed leaves its devices' rows behind)."""


class NotConnected(Exception):
    """The device holds no tunnel to this server; `str()` says so to a person."""


@dataclass
class DeviceLink:
    """One device's live tunnel."""

    principal: DevicePrincipal
    mux: Mux
    connected_ms: int
    etag: str | None = None
    """The target's ETag when the device was last told (or connected)."""


@dataclass
class TunnelHub:
    """Per-process registry of device tunnels."""

    state: ServerState
    links: dict[int, DeviceLink] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _generation: int = -1

    def connected(self, device_id: int) -> bool:
        return device_id in self.links

    async def _mark(self, device_id: int, connected: bool) -> None:
        me = self.state.settings.own_url

        def write() -> None:
            with self.state.db.writing() as s:
                if connected:
                    s.execute(sa.update(t.Device).where(t.Device.id == device_id)
                              .values(vpn_connected=True, tunnel_host=me))
                else:  # unless another process holds a newer link of the device
                    s.execute(sa.update(t.Device).where(
                        t.Device.id == device_id, t.Device.tunnel_host.in_((me, "")))
                        .values(vpn_connected=False, tunnel_host=""))
        try:
            await run_in_threadpool(write)
        except Exception:  # status only; the link itself is fine
            log.exception("recording the tunnel state of device %s failed", device_id)

    async def serve(self, *, principal: DevicePrincipal, transport: Transport) -> None:
        """Hold a device's tunnel until it closes (a newer link of the same device wins)."""
        mux = Mux(transport, initiator=False)
        link = DeviceLink(principal=principal, mux=mux, connected_ms=int(time.time() * 1000))
        old = self.links.get(principal.device_id)
        self.links[principal.device_id] = link
        if old is not None:
            await old.mux.close("a newer tunnel of this device replaced this one")
        target = await self.state.target(principal.device_id, principal.fleet_id)
        link.etag = target.etag if target is not None else None
        await self._mark(principal.device_id, True)
        try:
            await mux.run()
        finally:
            if self.links.get(principal.device_id) is link:
                del self.links[principal.device_id]
                await self._mark(principal.device_id, False)

    async def open(self, *, device_id: int, request: dict[str, Any]) -> Stream:
        """A stream to a connected device (NotConnected otherwise; StreamRefused if the
        device says no)."""
        link = self.links.get(device_id)
        if link is None:
            raise NotConnected("the device is not connected to the tunnel (it is offline, "
                               "runs a supervisor without the tunnel, or cannot reach "
                               "this server's websocket)")
        return await link.mux.open(request)

    async def announce_changes(self) -> int:
        """Tell every connected device whose target changed to poll now; how many were told."""
        told = 0
        for link in list(self.links.values()):
            p = link.principal
            try:
                target = await self.state.target(p.device_id, p.fleet_id)
            except Exception:
                log.exception("rendering the target of device %s failed", p.uuid)
                continue
            etag = target.etag if target is not None else None
            if etag != link.etag:
                link.etag = etag
                with contextlib.suppress(Exception):
                    await link.mux.control({"op": "poll", "etag": etag})
                    told += 1
        return told

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            try:
                if self.state.generation != self._generation:
                    self._generation = self.state.generation
                    await self.announce_changes()
                now = time.monotonic()
                for link in list(self.links.values()):
                    if now - link.mux.last_received > IDLE_LIMIT_S:
                        await link.mux.close("no ping from the device")
            except Exception:
                log.exception("the tunnel hub's watch failed")

    async def forget_host(self, host: str) -> int:
        """A server process that holds tunnels per the database is gone (its port refuses
        connections): its devices have no live tunnel. How many rows were cleared."""
        return int(await run_in_threadpool(forget_host, self.state.db, host))

    async def probe_holders(self) -> list[str]:
        """Clear the tunnels of other server processes that refuse connections; their URLs."""
        me = self.state.settings.own_url

        def hosts() -> list[str]:
            with self.state.db.session() as s:
                return [h for (h,) in s.execute(sa.select(t.Device.tunnel_host).where(
                    t.Device.tunnel_host.not_in(("", me))).distinct())]

        gone = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=3.0)) as http:
            for host in await run_in_threadpool(hosts):
                try:
                    await http.get(host.rstrip("/") + "/ping")
                except httpx.ConnectError:  # refused: nothing listens there any more
                    await self.forget_host(host)
                    gone.append(host)
                except httpx.HTTPError:
                    pass  # slow or odd, but there: not proof that it is gone
        if gone:
            log.warning("tunnel: server processes %s are gone; their devices' tunnels "
                        "are marked closed", ", ".join(gone))
        return gone

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(PROBE_S)
            try:
                await self.probe_holders()
            except Exception:
                log.exception("checking the other tunnel holders failed")

    def start(self) -> None:
        self._generation = self.state.generation
        self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._probe())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for link in list(self.links.values()):
            await link.mux.close("the server is stopping")


def forget_host(db: Database, host: str) -> int:
    """Mark the tunnels the database says `host` (a server process URL) holds as closed."""
    with db.writing() as s:
        done = s.execute(sa.update(t.Device).where(
            t.Device.tunnel_host.in_((host, host.rstrip("/"), host.rstrip("/") + "/")))
            .values(vpn_connected=False, tunnel_host=""))
        return int(getattr(done, "rowcount", 0) or 0)


def forget_stale_links(db: Database) -> None:
    """At the start of the only server process (SQLite): no device holds a tunnel yet."""
    with db.writing() as s:
        s.execute(sa.update(t.Device).where(t.Device.vpn_connected.is_(True))
                  .values(vpn_connected=False, tunnel_host=""))
        audit.cut_open_sessions(s)
