"""`Transport` adapters for the `websockets` library's connections (client and server)."""

from __future__ import annotations

from typing import Any

from edgefleet.tunnel.frames import MAX_PAYLOAD
from edgefleet.tunnel.mux import TransportClosed

WRITE_LIMIT = 4 * MAX_PAYLOAD
"""High-water mark of a `websockets` connection's write buffer: `send` waits above it. The
library's default (32 KiB) made every full DATA frame wait for the peer to read it."""


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
