"""An in-memory `Transport` pair (tests and in-process use), bounded like a socket buffer."""

from __future__ import annotations

import asyncio

from edgefleet.tunnel.mux import TransportClosed

_CLOSED = b""


class PipeEnd:
    """One end of a pipe: what it sends the other end receives, in order."""

    def __init__(self, inbox: asyncio.Queue[bytes], outbox: asyncio.Queue[bytes]) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise TransportClosed("pipe closed")
        await self._outbox.put(bytes(data))

    async def recv(self) -> bytes:
        if self._closed:
            raise TransportClosed("pipe closed")
        data = await self._inbox.get()
        if data is _CLOSED or not data:
            self._closed = True
            raise TransportClosed("pipe closed")
        return data

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            for q in (self._outbox, self._inbox):
                try:
                    q.put_nowait(_CLOSED)
                except asyncio.QueueFull:
                    _ = q.get_nowait()
                    q.put_nowait(_CLOSED)


def pipe(*, maxsize: int = 64) -> tuple[PipeEnd, PipeEnd]:
    """Two connected ends; each direction holds at most `maxsize` messages in flight."""
    a: asyncio.Queue[bytes] = asyncio.Queue(maxsize)
    b: asyncio.Queue[bytes] = asyncio.Queue(maxsize)
    return PipeEnd(a, b), PipeEnd(b, a)
