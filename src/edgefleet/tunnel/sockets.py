"""TCP connections carried by a stream (`edgefleet tunnel` on the user's side, a `tcp` stream
on the device): an asyncio protocol that hands over the bytes the transport received as they
are, without a StreamReader's buffer (which copies every byte in and again out)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import cast

from edgefleet.tunnel.frames import MAX_PAYLOAD

READ_LIMIT = 2 * MAX_PAYLOAD
"""Received bytes a socket may have waiting for the stream before reading pauses (the
stream's credit then holds the sender back through TCP)."""


class SocketPipe(asyncio.Protocol):
    """One TCP connection: `read()` what arrived, `write()` + `drain()`, half-close."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._eof = False
        self._error: Exception | None = None
        self._reading_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._lost = False
        self.made: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- the transport's calls ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods)
        self.transport = cast(asyncio.Transport, transport)
        if not self.made.done():
            self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued > READ_LIMIT and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    def _wake_reader(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def _wake_writer(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the application's calls --------------------------------------------------------------
    async def read(self, size: int = MAX_PAYLOAD) -> bytes:
        """What arrived (up to about `size` bytes), b"" at EOF; ConnectionError if the
        connection broke."""
        parts = await self.read_parts(size)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_parts(self, size: int = MAX_PAYLOAD) -> list[bytes]:
        """`read`, as the chunks that arrived (not joined: the caller joins them with a
        header in one copy); [] at EOF."""
        while not self._chunks:
            if self._eof:
                if self._error is not None:
                    raise ConnectionResetError(str(self._error))
                return []
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable
            self._readable = None
        parts = [self._chunks.popleft()]
        total = len(parts[0])
        while self._chunks and total + len(self._chunks[0]) <= size:
            total += len(self._chunks[0])
            parts.append(self._chunks.popleft())
        self._queued -= total
        if self._reading_paused and self._queued <= READ_LIMIT // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return parts

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is not None and not self._lost:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the socket's send buffer is full (ConnectionResetError once closed)."""
        if self._lost:
            raise ConnectionResetError("the connection closed")
        if self._writable is not None:
            await self._writable
            if self._lost:
                raise ConnectionResetError("the connection closed")

    def write_eof(self) -> None:
        if self.transport is not None and not self._lost and self.transport.can_write_eof():
            self.transport.write_eof()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_socket(host: str, port: int) -> SocketPipe:
    """Connect to host:port."""
    loop = asyncio.get_running_loop()
    _transport, pipe = await loop.create_connection(SocketPipe, host, port)
    return pipe


async def serve_sockets(handler: Callable[[SocketPipe], Awaitable[None]], host: str,
                        port: int) -> asyncio.Server:
    """Listen on host:port; each connection is served by `handler` in its own task."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def made() -> SocketPipe:
        pipe = SocketPipe()
        task = loop.create_task(_serve(handler, pipe))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return pipe

    return await loop.create_server(made, host, port)


async def _serve(handler: Callable[[SocketPipe], Awaitable[None]], pipe: SocketPipe) -> None:
    await pipe.made
    try:
        await handler(pipe)
    finally:
        pipe.close()
