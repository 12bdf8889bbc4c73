"""A `websockets` stream reader that does not copy every received byte twice.

The `websockets` library (the tunnel's client connections, and uvicorn's server side) appends
each chunk read from the socket to one bytearray and slices every frame's payload out of it
again: two copies of every byte before the frame exists. `ChunkReader` keeps the chunks as
they arrived and hands out a payload as one of them, or as the join of the pieces it spans:
at most one copy. `use_chunk_reader` puts it into a `websockets` protocol object before the
connection receives anything."""

from __future__ import annotations

import collections
from collections.abc import Generator
from typing import Any

from websockets.streams import StreamReader


class ChunkReader(StreamReader):
    """`websockets.streams.StreamReader`'s interface over a list of received chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: collections.deque[bytes | memoryview] = collections.deque()
        self.size = 0

    def _take(self, n: int) -> bytes:
        """The first `n` buffered bytes (the caller checked that there are as many)."""
        self.size -= n
        first = self.chunks[0]
        if len(first) == n and isinstance(first, bytes):
            self.chunks.popleft()
            return first
        if len(first) >= n:
            view = memoryview(first)
            if len(first) == n:
                self.chunks.popleft()
            else:
                self.chunks[0] = view[n:]
            return bytes(view[:n])
        parts: list[bytes | memoryview] = []
        need = n
        while need:
            chunk = self.chunks[0]
            if len(chunk) <= need:
                parts.append(self.chunks.popleft())
                need -= len(chunk)
            else:
                view = memoryview(chunk)
                parts.append(view[:need])
                self.chunks[0] = view[need:]
                need = 0
        return b"".join(parts)

    def _peek(self) -> bytes:
        """All buffered bytes, as one chunk (only the HTTP handshake needs this)."""
        if len(self.chunks) != 1 or not isinstance(self.chunks[0], bytes):
            joined = b"".join(self.chunks)
            self.chunks.clear()
            if joined:
                self.chunks.append(joined)
        return bytes(self.chunks[0]) if self.chunks else b""

    def read_line(self, m: int, too_long_exc_type: type[Exception] = RuntimeError
                  ) -> Generator[None, None, bytearray]:
        p = 0
        while True:
            n = self._peek().find(b"\n", p) + 1
            if n > 0:
                break
            p = self.size
            if p > m:
                raise too_long_exc_type(f"read {p} bytes, expected no more than {m} bytes")
            if self.eof:
                raise EOFError(f"stream ends after {p} bytes, before end of line")
            yield
        if n > m:
            raise too_long_exc_type(f"read {n} bytes, expected no more than {m} bytes")
        return bytearray(self._take(n))

    def read_exact(self, n: int) -> Generator[None, None, bytes]:  # type: ignore[override]
        assert n >= 0
        while self.size < n:
            if self.eof:
                raise EOFError(f"stream ends after {self.size} bytes, expected {n} bytes")
            yield
        return self._take(n) if n else b""

    def read_to_eof(self, m: int, too_long_exc_type: type[Exception] = RuntimeError
                    ) -> Generator[None, None, bytearray]:
        while not self.eof:
            if self.size > m:
                raise too_long_exc_type(f"read {self.size} bytes, expected no more than "
                                        f"{m} bytes")
            yield
        return bytearray(self._take(self.size)) if self.size else bytearray()

    def at_eof(self) -> Generator[None, None, bool]:
        while True:
            if self.size:
                return False
            if self.eof:
                return True
            yield

    def feed_data(self, data: bytes | bytearray) -> None:
        if self.eof:
            raise EOFError("stream ended")
        if data:
            # a bytearray may be reused by whoever passed it: keep a copy
            self.chunks.append(data if isinstance(data, bytes) else bytes(data))
            self.size += len(data)

    def discard(self) -> None:
        self.chunks.clear()
        self.size = 0


def use_chunk_reader(protocol: Any) -> None:
    """Give a `websockets` protocol object (`ClientProtocol`/`ServerProtocol`, before it
    received any data) a `ChunkReader`, restarting its parser on it."""
    protocol.reader = ChunkReader()
    protocol.parser = protocol.parse()
    next(protocol.parser)
