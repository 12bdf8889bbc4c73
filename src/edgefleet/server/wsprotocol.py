"""The server's websocket protocol: uvicorn's `websockets` (sans-I/O) one, reading frames with
the tunnel's `ChunkReader` (one copy of each received byte fewer: device tunnels and users'
relays carry bulk data through here)."""

from __future__ import annotations

from typing import Any

from edgefleet.tunnel.wsreader import use_chunk_reader


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

    return ChunkedWebSocketsProtocol
