"""`Transport` adapters for the `websockets` library's connections (client and server)."""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from edgefleet.tunnel.frames import MAX_PAYLOAD
from edgefleet.tunnel.mux import TransportClosed
from edgefleet.tunnel.wsreader import use_chunk_reader

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

WRITE_LIMIT = 4 * MAX_PAYLOAD
"""High-water mark of a `websockets` connection's write buffer: `send` waits above it. The
library's default (32 KiB) made every full DATA frame wait for the peer to read it."""


def masked_frame(parts: Sequence[bytes | memoryview], key: bytes) -> bytes:
    """RFC 6455: one unfragmented binary frame from a client, its payload the concatenation
    of `parts`, masked with `key`: each part is masked where it lies (one copy of each byte),
    then everything joined (a second)."""
    length = sum(len(p) for p in parts)
    if length < 126:
        out = [struct.pack("!BB", 0x82, 0x80 | length), key]
    elif length < 1 << 16:
        out = [struct.pack("!BBH", 0x82, 0x80 | 126, length), key]
    else:
        out = [struct.pack("!BBQ", 0x82, 0x80 | 127, length), key]
    offset = 0
    for part in parts:
        k = offset % 4
        out.append(apply_mask(part, key[k:] + key[:k]))
        offset += len(part)
    return b"".join(out)


class ChunkedClientConnection(ClientConnection):
    """`websockets.connect(..., create_connection=ChunkedClientConnection)`: a client
    connection that reads frames with `ChunkReader` and writes a message given as pieces
    with one serialization (`send_parts`): fewer copies of every byte each way."""

    def __init__(self, protocol: Any, *args: Any, **kwargs: Any) -> None:
        use_chunk_reader(protocol)
        super().__init__(protocol, *args, **kwargs)

    async def send_parts(self, parts: Sequence[bytes | memoryview]) -> bool:
        """Send one binary message made of `parts` (False, nothing sent, unless the
        connection is open: `send` then raises what it should)."""
        if self.protocol.state is not State.OPEN or self.transport.is_closing():
            return False
        self.transport.write(masked_frame(parts, os.urandom(4)))
        await self.drain()
        return True


class WebsocketsTransport:
    """A `websockets` connection (`send`/`recv`/`close`) as a tunnel transport."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def send(self, data: bytes) -> None:
        await self.connection.send(data)

    async def send_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        """One binary message made of `parts` (see `ChunkedClientConnection.send_parts`)."""
        fast = getattr(self.connection, "send_parts", None)
        if fast is None or not await fast(parts):
            await self.connection.send(b"".join(parts))

    async def recv(self) -> bytes:
        try:
            message = await self.connection.recv()
        except Exception as exc:
            raise TransportClosed(str(exc)) from None
        if isinstance(message, str):
            return message.encode()
        return bytes(message)

    async def close(self) -> None:
        await self.connection.close()
