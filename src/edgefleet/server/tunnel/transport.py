"""A Starlette (FastAPI) websocket as a tunnel `Transport`."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from edgefleet.server.wsprotocol import SEND_PARTS
from edgefleet.tunnel.mux import TransportClosed


class StarletteTransport:
    """Binary messages over an accepted Starlette websocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._closed = False
        extension: Any = websocket.scope.get("extensions", {}).get(SEND_PARTS) or {}
        self._send_parts: Callable[[Sequence[bytes | memoryview]], Awaitable[bool]] | None = (
            extension.get("send"))

    async def send(self, data: bytes) -> None:
        await self.send_parts([data])

    async def send_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        """One binary message made of `parts`, written without joining them when the
        server offers it (server/wsprotocol.py)."""
        if self._closed:
            raise TransportClosed("websocket closed")
        if self._send_parts is None or not await self._send_parts(parts):
            await self.websocket.send_bytes(b"".join(parts))

    async def recv(self) -> bytes:
        if self._closed:
            raise TransportClosed("websocket closed")
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError) as exc:
            self._closed = True
            raise TransportClosed(str(exc)) from None
        if message["type"] == "websocket.disconnect":
            self._closed = True
            raise TransportClosed("websocket closed by the peer")
        data = message.get("bytes")
        if data is None:
            text = message.get("text") or ""
            return bytes(text.encode())
        return bytes(data)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(RuntimeError, OSError):
                await self.websocket.close()
