"""The device's tunnel link: one outbound websocket to the fleet server, kept alive with
pings and re-opened with jittered exponential backoff. It runs beside the poll loop and never
waits on it (nor it on the tunnel)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

import websockets

from edgefleet.device.logs import LogSink
from edgefleet.device.tunnel.sessions import SessionContext, serve
from edgefleet.tunnel.mux import Mux
from edgefleet.tunnel.process import release_memory, tune_malloc
from edgefleet.tunnel.stream import Stream
from edgefleet.tunnel.websocket import (
    WRITE_LIMIT,
    ChunkedClientConnection,
    WebsocketsTransport,
)

PING_S = 15.0
PING_TIMEOUT_S = 20.0
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 15.0
STABLE_S = 30.0
"""A link that lasted this long resets the backoff."""


def tunnel_url(endpoint: str, uuid: str) -> str:
    base = endpoint.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return f"{base}/device/v3/{uuid}/tunnel"


def backoff_delay(*, failures: int, base_s: float = BACKOFF_BASE_S,
                  cap_s: float = BACKOFF_CAP_S, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [base/2, min(cap, base * 2^failures)], so devices that lost
    the server together come back spread out."""
    top = min(cap_s, base_s * 2 ** max(0, failures))
    return (rng or random).uniform(base_s / 2, max(base_s / 2, top))


class TunnelLink:
    """Keeps this device's tunnel open until cancelled."""

    def __init__(self, *, endpoint: str, uuid: str, api_key: str, ctx: SessionContext,
                 logs: LogSink, on_poll: Callable[[str | None], None],
                 tls: ssl.SSLContext | None = None) -> None:
        self.url = tunnel_url(endpoint, uuid)
        self.tls = tls if self.url.startswith("wss:") else None
        """Whom to trust for a wss:// server (None: the default, the system's CAs)."""
        self.api_key = api_key
        self.ctx = ctx
        self.logs = logs
        self.on_poll = on_poll
        self.mux: Mux | None = None
        self.connects = 0
        self.connected_at = 0.0
        """time.monotonic() of the last successful connect."""

    def _control(self, doc: dict[str, Any]) -> None:
        if doc.get("op") == "poll":
            etag = doc.get("etag")
            self.on_poll(etag if isinstance(etag, str) else None)

    async def _serve(self, stream: Stream) -> None:
        try:
            await serve(stream, ctx=self.ctx)
        finally:
            mux = self.mux
            if mux is not None and all(s is stream for s in mux.streams.values()):
                release_memory()  # the last stream ended: the transfer buffers go back

    async def _pinger(self, mux: Mux) -> None:
        while True:
            await asyncio.sleep(PING_S)
            try:
                await mux.ping(timeout_s=PING_TIMEOUT_S)
            except Exception:
                await mux.close("the server stopped answering pings")
                return

    async def connect_once(self) -> None:
        """One link: connect, serve streams until it closes (raises if it cannot connect)."""
        async with websockets.connect(
                self.url, additional_headers={"Authorization": f"Bearer {self.api_key}"},
                ping_interval=None, max_size=1 << 20, write_limit=WRITE_LIMIT, open_timeout=20,
                create_connection=ChunkedClientConnection,
                compression=None, ssl=self.tls) as conn:
            mux = Mux(WebsocketsTransport(conn), initiator=True, handler=self._serve,
                      on_control=self._control)
            mux.close_reason = "the tunnel to the server closed"
            self.mux = mux
            self.connects += 1
            self.connected_at = time.monotonic()
            self.logs.system("Tunnel connected")
            self.on_poll(None)  # a change may have been announced while the link was down
            pinger = asyncio.create_task(self._pinger(mux))
            try:
                await mux.run()
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
                await mux.cancel_tasks()
                self.mux = None

    async def run(self) -> None:
        tune_malloc()  # this process relays tunnel bytes now
        failures = 0
        while True:
            started = time.monotonic()
            error = ""
            try:
                await self.connect_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f": {type(exc).__name__}: {exc}"
            if time.monotonic() - started > STABLE_S:
                failures = 0
            failures += 1
            delay = backoff_delay(failures=failures)
            if failures <= 3 or failures % 10 == 0:
                self.logs.system(f"Tunnel closed{error}; reconnecting in {delay:.1f}s",
                                 error=bool(error))
            await asyncio.sleep(delay)
