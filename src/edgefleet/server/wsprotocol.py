"""The server's websocket protocol: uvicorn's `websockets` (sans-I/O) one, with two savings
for the bulk data that device tunnels and users' relays carry through the server:
- frames are read with the tunnel's `ChunkReader` (one copy of each received byte fewer);
- a binary message given as pieces (a tunnel frame's header and its payload) is written with
  its websocket frame header in one `writelines` (uvloop: one writev, no copy), offered to
  the application as the ASGI scope extension `SEND_PARTS`."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from websockets.protocol import State

from edgefleet.tunnel.wsreader import use_chunk_reader

SEND_PARTS = "edgefleet.websocket.send_parts"
"""Scope extension: `{"send": async (parts) -> bool}`; False when the connection is not open
(then send through ASGI, which raises the right error)."""


def binary_frame_header(length: int) -> bytes:
    """RFC 6455 header of one unfragmented, unmasked binary frame of `length` bytes."""
    if length < 126:
        return struct.pack("!BB", 0x82, length)
    if length < 1 << 16:
        return struct.pack("!BBH", 0x82, 126, length)
    return struct.pack("!BBQ", 0x82, 127, length)


def websocket_protocol() -> Any:
    """What to pass as uvicorn's `ws`: the class, or "auto" if uvicorn lacks it."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
    except ImportError:  # pragma: no cover - another uvicorn: its own choice
        return "auto"

    class ChunkedWebSocketsProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            use_chunk_reader(self.conn)

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            scope: Any = getattr(self, "scope", None)
            if scope is not None:
                scope.setdefault("extensions", {})[SEND_PARTS] = {"send": self.send_parts}

        async def send_parts(self, parts: Sequence[bytes | memoryview]) -> bool:
            await self.writable.wait()
            if (self.disconnected or self.close_sent or not self.handshake_complete
                    or self.initial_response is not None or self.conn.state is not State.OPEN
                    or self.transport.is_closing()):
                return False
            length = sum(len(p) for p in parts)
            self.transport.writelines([binary_frame_header(length), *parts])
            return True

    return ChunkedWebSocketsProtocol
