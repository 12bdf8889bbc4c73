"""Tunnel frames over a byte stream (4-byte length prefix) instead of a websocket: over a TCP
socket, or nested inside a tunnel stream (a device reached through a gateway device)."""

from __future__ import annotations

import asyncio
import struct

from edgefleet.tunnel.mux import TransportClosed
from edgefleet.tunnel.stream import Stream, StreamReset

LENGTH = struct.Struct("!I")
MAX_MESSAGE = 1 << 20


class SocketTransport:
    """Length-prefixed messages over an asyncio TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(LENGTH.pack(len(data)) + data)
        await self.writer.drain()

    async def recv(self) -> bytes:
        try:
            (size,) = LENGTH.unpack(await self.reader.readexactly(LENGTH.size))
            if size > MAX_MESSAGE:
                raise TransportClosed(f"a message of {size} bytes is too large")
            return await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, OSError) as exc:
            raise TransportClosed(str(exc)) from None

    async def close(self) -> None:
        self.writer.close()


class StreamTransport:
    """Length-prefixed messages inside a tunnel stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.write(LENGTH.pack(len(data)) + data)

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            try:
                chunk = await self.stream.read()
            except StreamReset as exc:
                raise TransportClosed(str(exc)) from None
            if chunk.kind == "eof":
                raise TransportClosed("the stream ended")
            self._buffer += chunk.data

    async def recv(self) -> bytes:
        await self._fill(LENGTH.size)
        (size,) = LENGTH.unpack(self._buffer[:LENGTH.size])
        if size > MAX_MESSAGE:
            raise TransportClosed(f"a message of {size} bytes is too large")
        await self._fill(LENGTH.size + size)
        message = bytes(self._buffer[LENGTH.size:LENGTH.size + size])
        del self._buffer[:LENGTH.size + size]
        return message

    async def close(self) -> None:
        await self.stream.reset("closed")
