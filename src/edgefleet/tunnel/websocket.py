"""`Transport` adapters for the `websockets` library's connections (client and server)."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import ClientConnection

from edgefleet.tunnel.frames import MAX_PAYLOAD
from edgefleet.tunnel.mux import TransportClosed
from edgefleet.tunnel.wsreader import use_chunk_reader

WRITE_LIMIT = 4 * MAX_PAYLOAD
"""High-water mark of a `websockets` connection's write buffer: `send` waits above it. The
library's default (32 KiB) made every full DATA frame wait for the peer to read it."""


class ChunkedClientConnection(ClientConnection):
    """`websockets.connect(..., create_connection=ChunkedClientConnection)`: a client
    connection that reads frames with `ChunkReader` (fewer copies of received bytes)."""

    def __init__(self, protocol: Any, *args: Any, **kwargs: Any) -> None:
        use_chunk_reader(protocol)
        super().__init__(protocol, *args, **kwargs)


class WebsocketsTransport:
    """A `websockets` connection (`send`/`recv`/`close`) as a tunnel transport."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def send(self, data: bytes) -> None:
        await self.connection.send(data)

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
