"""Tunnel frames: a 5-byte header (type, stream id) and a payload, one per websocket message."""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any

HEADER = struct.Struct("!BI")
MAX_PAYLOAD = (1 << 20) - HEADER.size
"""Largest DATA payload a sender puts in one frame."""


class Kind(enum.IntEnum):
    """What a frame says."""

    OPEN = 1      # json request: open a stream of some kind
    ACCEPT = 2    # the stream is open
    REJECT = 3    # json {error}: the stream could not be opened
    DATA = 4      # bytes of the main channel (stdin / stdout / a TCP byte stream)
    STDERR = 5    # bytes of a command's stderr
    EOF = 6       # the sender sends no more data on this stream
    EXIT = 7      # json {code}: the command ended with this exit status
    RESET = 8     # json {error}: the stream is aborted in both directions
    WINDOW = 9    # uint32: the receiver consumed this many more bytes (credit)
    RESIZE = 10   # json {rows, cols}: a terminal's window size changed
    PING = 11     # payload echoed in a PONG
    PONG = 12
    CONTROL = 13  # json on stream 0: messages about the link itself (e.g. "poll now")


class ProtocolError(Exception):
    """The peer sent something this protocol does not allow."""


@dataclass(frozen=True)
class Frame:
    """One frame: its kind, stream id (0 = the link itself) and payload."""

    kind: Kind
    stream: int
    payload: bytes | memoryview = b""
    """DATA and STDERR payloads are views into the received message (not copied)."""

    def encode(self) -> bytes:
        return HEADER.pack(self.kind, self.stream) + bytes(self.payload)

    def json(self) -> dict[str, Any]:
        """The payload of a json frame as a dict."""
        try:
            doc = json.loads(bytes(self.payload) or b"{}")
        except ValueError:
            raise ProtocolError(f"{self.kind.name} frame payload is not JSON") from None
        if not isinstance(doc, dict):
            raise ProtocolError(f"{self.kind.name} frame payload is not a JSON object")
        return doc


def encode_json(kind: Kind, stream: int, doc: dict[str, Any]) -> bytes:
    return HEADER.pack(kind, stream) + json.dumps(doc, separators=(",", ":")).encode()


def encode_window(stream: int, credit: int) -> bytes:
    return HEADER.pack(Kind.WINDOW, stream) + struct.pack("!I", credit)


def decode(message: bytes | str) -> Frame:
    """A frame from one websocket message (text messages are a protocol error)."""
    if isinstance(message, str) or len(message) < HEADER.size:
        raise ProtocolError("a tunnel frame is a binary message of at least 5 bytes")
    kind, stream = HEADER.unpack_from(message)
    try:
        known = Kind(kind)
    except ValueError:
        raise ProtocolError(f"unknown frame type {kind}") from None
    if known in (Kind.DATA, Kind.STDERR):
        return Frame(known, stream, memoryview(message)[HEADER.size:])
    return Frame(known, stream, bytes(message[HEADER.size:]))


def window_credit(frame: Frame) -> int:
    if len(frame.payload) != 4:
        raise ProtocolError("a WINDOW frame carries a 4-byte credit")
    return int(struct.unpack("!I", frame.payload)[0])
