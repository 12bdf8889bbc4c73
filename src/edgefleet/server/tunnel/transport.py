"""A Starlette (FastAPI) websocket as a tunnel `Transport`."""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect

from edgefleet.tunnel.mux import TransportClosed


class StarletteTransport:
    """Binary messages over an accepted Starlette websocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._closed = False

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise TransportClosed("websocket closed")
        await self.websocket.send_bytes(data)

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
