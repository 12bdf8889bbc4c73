"""One multiplexed stream: ordered chunks in, credit-limited writes out."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from edgefleet.tunnel.frames import HEADER, MAX_PAYLOAD, Kind, encode_json, encode_window

DEFAULT_WINDOW = 2 * 1024 * 1024
"""Bytes a receiver lets a sender have in flight on one stream before it must wait."""


class StreamReset(Exception):
    """The stream was aborted (by the peer, or because the link closed); `str()` says why."""


@dataclass(frozen=True)
class Chunk:
    """What `Stream.read` returns: `data`/`stderr` bytes, `exit` with a code, `resize` with a
    window size, or `eof` (the peer sends nothing more)."""

    kind: str
    data: bytes | memoryview = b""
    """Bytes of `data`/`stderr` (a view into the received frame: `bytes()` it to keep it)."""
    code: int = 0
    rows: int = 0
    cols: int = 0


EOF_CHUNK = Chunk("eof")


class Stream:
    """A bidirectional stream of a `Mux`. Reads deliver chunks in order; writes wait for
    credit, so a slow reader at the other end holds the writer instead of filling memory."""

    def __init__(self, *, stream_id: int,
                 send: Callable[[bytes | list[bytes | memoryview]], Awaitable[None]],
                 window: int, request: dict[str, Any]) -> None:
        self.id = stream_id
        self.request = request
        self._send = send
        self._window = window
        self._credit = window
        self._credit_changed = asyncio.Event()
        self._queue: asyncio.Queue[Chunk] = asyncio.Queue()
        self._buffered = 0
        self._consumed = 0
        self.eof_sent = False
        self.eof_received = False
        self.reset_reason: str | None = None
        self.bytes_in = 0
        """Data bytes received from the peer (both channels)."""
        self.bytes_out = 0
        """Data bytes sent to the peer (both channels)."""
        self.accepted: asyncio.Future[dict[str, Any]] = (
            asyncio.get_running_loop().create_future())

    @property
    def finished(self) -> bool:
        return self.reset_reason is not None or (self.eof_sent and self.eof_received)

    # --- the peer's frames (called by the mux) ---------------------------------------------
    def _deliver(self, chunk: Chunk) -> bool:
        """Queue a chunk; False when the peer exceeded its credit (a protocol violation)."""
        if chunk.kind in ("data", "stderr"):
            self._buffered += len(chunk.data)
            self.bytes_in += len(chunk.data)
            if self._buffered > self._window:
                return False
        if chunk.kind == "eof":
            self.eof_received = True
        self._queue.put_nowait(chunk)
        return True

    def _grant(self, credit: int) -> None:
        self._credit += credit
        self._credit_changed.set()

    def _abort(self, reason: str) -> None:
        if self.reset_reason is None:
            self.reset_reason = reason
        self._credit_changed.set()
        self._queue.put_nowait(Chunk("reset", data=reason.encode()))
        if not self.accepted.done():
            self.accepted.set_exception(StreamReset(reason))
            self.accepted.exception()  # retrieved: nobody may be waiting for it

    # --- the application's side ------------------------------------------------------------
    async def read(self) -> Chunk:
        """The next chunk; after `eof`, every read returns `eof` again. StreamReset when the
        stream was aborted (data the peer sent after its EOF is never lost to a reset)."""
        if self.eof_received and self._queue.empty():
            return EOF_CHUNK
        if self.reset_reason is not None and self._queue.empty():
            raise StreamReset(self.reset_reason)
        chunk = await self._queue.get()
        if chunk.kind == "reset":
            if self.eof_received and self._queue.empty():
                return EOF_CHUNK
            raise StreamReset(self.reset_reason or "the stream was reset")
        if chunk.kind in ("data", "stderr"):
            n = len(chunk.data)
            self._buffered -= n
            self._consumed += n
            if self._consumed >= self._window // 2 and self.reset_reason is None:
                credit, self._consumed = self._consumed, 0
                await self._send(encode_window(self.id, credit))
        return chunk

    async def write(self, data: bytes | memoryview, *, stderr: bool = False) -> None:
        """Send bytes, waiting for credit as needed (StreamReset if the stream ends)."""
        kind = Kind.STDERR if stderr else Kind.DATA
        view = memoryview(data)
        while view:
            while self._credit <= 0 and self.reset_reason is None:
                self._credit_changed.clear()
                await self._credit_changed.wait()
            if self.reset_reason is not None:
                raise StreamReset(self.reset_reason)
            if self.eof_sent:
                raise StreamReset("write after EOF")
            n = min(len(view), self._credit, MAX_PAYLOAD)
            self._credit -= n
            self.bytes_out += n
            await self._send([HEADER.pack(kind, self.id), view[:n]])
            view = view[n:]

    async def write_parts(self, parts: list[bytes]) -> None:
        """`write` the concatenation of `parts`; when they fit one frame and the credit,
        header and parts go to the transport as they are (joined there in at most one
        copy)."""
        total = sum(map(len, parts))
        if (total <= min(self._credit, MAX_PAYLOAD) and self.reset_reason is None
                and not self.eof_sent):
            self._credit -= total
            self.bytes_out += total
            await self._send([HEADER.pack(Kind.DATA, self.id), *parts])
        else:
            await self.write(parts[0] if len(parts) == 1 else b"".join(parts))

    async def write_eof(self) -> None:
        """Say that nothing more will be written (the peer's reads then end with `eof`)."""
        if self.eof_sent or self.reset_reason is not None:
            return
        self.eof_sent = True
        await self._send(HEADER.pack(Kind.EOF, self.id))

    async def send_exit(self, code: int) -> None:
        """Pass a command's exit status (before `write_eof`)."""
        if self.reset_reason is None and not self.eof_sent:
            await self._send(encode_json(Kind.EXIT, self.id, {"code": code}))

    async def resize(self, *, rows: int, cols: int) -> None:
        """Tell the peer the terminal's window size."""
        if self.reset_reason is None and not self.eof_sent:
            await self._send(encode_json(Kind.RESIZE, self.id, {"rows": rows, "cols": cols}))

    async def accept(self) -> None:
        """Accept a stream the peer opened."""
        if not self.accepted.done():
            self.accepted.set_result({})
        await self._send(HEADER.pack(Kind.ACCEPT, self.id))

    async def reject(self, error: str) -> None:
        """Refuse a stream the peer opened, saying why."""
        self._abort(error)
        await self._send(encode_json(Kind.REJECT, self.id, {"error": error}))

    async def reset(self, reason: str) -> None:
        """Abort the stream in both directions, saying why."""
        if self.reset_reason is not None:
            return
        self._abort(reason)
        # if the link is gone, the peer learns from that instead
        with contextlib.suppress(Exception):
            await self._send(HEADER.pack(Kind.RESET, self.id)
                             + json.dumps({"error": reason}).encode())
