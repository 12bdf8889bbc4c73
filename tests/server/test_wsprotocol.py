"""The server's websocket protocol (server/wsprotocol.py): its frame header for messages sent
as pieces is the one the websockets library writes."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from edgefleet.server.wsprotocol import binary_frame_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_binary_frame_header_is_rfc6455s(length: int) -> None:
    payload = bytes(length)
    assert binary_frame_header(length) + payload == Frame(Opcode.BINARY, payload).serialize(
        mask=False)
