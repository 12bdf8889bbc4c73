"""The multiplexer: many `Stream`s and control messages over one `Transport` (a websocket)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from edgefleet.tunnel.frames import (
    HEADER,
    Frame,
    Kind,
    ProtocolError,
    decode,
    encode_json,
    window_credit,
)
from edgefleet.tunnel.stream import DEFAULT_WINDOW, Chunk, Stream, StreamReset

log = logging.getLogger(__name__)


class TransportClosed(Exception):
    """The websocket under the mux closed."""


class Transport(Protocol):
    """A message transport: a websocket seen as `send(bytes)` and `recv() -> bytes`; `recv`
    raises TransportClosed (or any exception) when the socket is gone."""

    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes: ...

    async def close(self) -> None: ...


Parts = list[bytes | memoryview]
"""One message given as the pieces it is made of (a transport with `send_parts(parts)` writes
them without joining them first)."""


Handler = Callable[[Stream], Awaitable[None]]
"""Serves a stream the peer opened (its request is `stream.request`); must accept or reject."""


class StreamRefused(Exception):
    """The peer would not open the stream; `str()` is its reason."""


class Mux:
    """Both ends run one: `open()` streams to the peer, `handler` serves the peer's streams,
    `on_control` receives control messages. `run()` reads until the transport closes, then
    resets every stream with a message saying the link was lost."""

    def __init__(self, transport: Transport, *, initiator: bool, handler: Handler | None = None,
                 on_control: Callable[[dict[str, Any]], None] | None = None,
                 window: int = DEFAULT_WINDOW) -> None:
        self.transport = transport
        self.handler = handler
        self.on_control = on_control
        self.window = window
        self.streams: dict[int, Stream] = {}
        self._next_id = 1 if initiator else 2
        self._send_lock = asyncio.Lock()
        self._pings: dict[bytes, asyncio.Future[float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[int, asyncio.Task[None]] = {}
        self.closed = asyncio.Event()
        self.close_reason = "the tunnel link closed"
        self.last_received = time.monotonic()
        self._send_parts: Callable[[Parts], Awaitable[None]] | None = getattr(
            transport, "send_parts", None)

    async def send_raw(self, data: bytes | Parts) -> None:
        """Send one message (bytes, or the list of pieces it is made of)."""
        if self.closed.is_set():
            raise StreamReset(self.close_reason)
        async with self._send_lock:
            try:
                if isinstance(data, list):
                    if self._send_parts is not None:
                        await self._send_parts(data)
                    else:
                        await self.transport.send(b"".join(data))
                else:
                    await self.transport.send(data)
            except Exception as exc:
                raise StreamReset(f"{self.close_reason} ({type(exc).__name__})") from None

    def _new_stream(self, stream_id: int, request: dict[str, Any]) -> Stream:
        stream = Stream(stream_id=stream_id, send=self.send_raw, window=self.window,
                        request=request)
        self.streams[stream_id] = stream
        return stream

    async def open(self, request: dict[str, Any], *, timeout_s: float = 30.0) -> Stream:
        """Open a stream of the kind `request` describes; StreamRefused if the peer says no."""
        stream_id = self._next_id
        self._next_id += 2
        stream = self._new_stream(stream_id, request)
        await self.send_raw(encode_json(Kind.OPEN, stream_id, request))
        try:
            await asyncio.wait_for(asyncio.shield(stream.accepted), timeout=timeout_s)
        except StreamReset as exc:
            self.streams.pop(stream_id, None)
            raise StreamRefused(str(exc)) from None
        except TimeoutError:
            self.streams.pop(stream_id, None)
            await stream.reset("no answer to the open request")
            raise StreamRefused(f"the peer did not answer within {timeout_s:g}s") from None
        return stream

    async def control(self, doc: dict[str, Any]) -> None:
        """Send a control message (stream 0)."""
        await self.send_raw(encode_json(Kind.CONTROL, 0, doc))

    async def ping(self, *, timeout_s: float = 10.0) -> float:
        """Round-trip time of a PING (seconds); TimeoutError if no PONG comes."""
        token = os.urandom(8)
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pings[token] = fut
        started = time.monotonic()
        try:
            await self.send_raw(HEADER.pack(Kind.PING, 0) + token)
            await asyncio.wait_for(fut, timeout=timeout_s)
        finally:
            self._pings.pop(token, None)
        return time.monotonic() - started

    async def close(self, reason: str = "the tunnel link closed") -> None:
        self.close_reason = reason
        with contextlib.suppress(Exception):
            await self.transport.close()

    async def run(self) -> None:
        """Read frames until the transport closes; then every stream is reset."""
        try:
            while True:
                try:
                    message = await self.transport.recv()
                except Exception:
                    return
                self.last_received = time.monotonic()
                try:
                    await self._dispatch(decode(message))
                except ProtocolError as exc:
                    self.close_reason = f"protocol error from the peer: {exc}"
                    log.warning("tunnel: %s", self.close_reason)
                    return
        finally:
            self.closed.set()
            for stream in list(self.streams.values()):
                stream._abort(self.close_reason)
            self.streams.clear()
            for fut in self._pings.values():
                if not fut.done():
                    fut.set_exception(TimeoutError(self.close_reason))
            with contextlib.suppress(Exception):
                await self.transport.close()

    async def _dispatch(self, frame: Frame) -> None:
        kind, sid = frame.kind, frame.stream
        if kind == Kind.PING:
            await self._send_quietly(HEADER.pack(Kind.PONG, 0) + frame.payload)
            return
        if kind == Kind.PONG:
            fut = self._pings.get(bytes(frame.payload))
            if fut is not None and not fut.done():
                fut.set_result(0.0)
            return
        if kind == Kind.CONTROL:
            if self.on_control is not None:
                self.on_control(frame.json())
            return
        if kind == Kind.OPEN:
            self._opened(sid, frame.json())
            return
        stream = self.streams.get(sid)
        if stream is None:
            if kind in (Kind.DATA, Kind.STDERR):  # tell the sender to stop
                await self._send_quietly(encode_json(Kind.RESET, sid,
                                                     {"error": "no such stream"}))
            return
        if kind == Kind.ACCEPT:
            if not stream.accepted.done():
                stream.accepted.set_result({})
        elif kind in (Kind.REJECT, Kind.RESET):
            reason = str(frame.json().get("error", "the peer reset the stream"))
            stream._abort(reason)
            self.streams.pop(sid, None)
            handler = self._handlers.get(sid)
            if handler is not None and not handler.done():
                handler.cancel()  # whatever serves the stream ends with it
        elif kind == Kind.WINDOW:
            stream._grant(window_credit(frame))
        elif kind in (Kind.DATA, Kind.STDERR, Kind.EOF, Kind.EXIT, Kind.RESIZE):
            self._deliver(stream, frame)
        self._forget_if_done(stream)

    def _deliver(self, stream: Stream, frame: Frame) -> None:
        kind = frame.kind
        if kind == Kind.DATA:
            chunk = Chunk("data", data=frame.payload)
        elif kind == Kind.STDERR:
            chunk = Chunk("stderr", data=frame.payload)
        elif kind == Kind.EOF:
            chunk = Chunk("eof")
        elif kind == Kind.EXIT:
            chunk = Chunk("exit", code=int(frame.json().get("code", -1)))
        else:
            doc = frame.json()
            chunk = Chunk("resize", rows=int(doc.get("rows", 24)), cols=int(doc.get("cols", 80)))
        if not stream._deliver(chunk):
            task = asyncio.create_task(stream.reset("the peer sent more than its credit"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _forget_if_done(self, stream: Stream) -> None:
        if stream.finished:
            self.streams.pop(stream.id, None)

    def forget(self, stream: Stream) -> None:
        """Drop a stream the application is done with (late frames for it are ignored)."""
        self.streams.pop(stream.id, None)

    async def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(StreamReset):
            await self.send_raw(data)

    def _opened(self, sid: int, request: dict[str, Any]) -> None:
        if sid in self.streams or sid % 2 == self._next_id % 2:
            raise ProtocolError(f"OPEN for stream {sid}, which this side owns or has open")
        stream = self._new_stream(sid, request)
        task = asyncio.create_task(self._serve(stream))
        self._tasks.add(task)
        self._handlers[sid] = task

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._handlers.pop(sid, None)

        task.add_done_callback(done)

    async def _serve(self, stream: Stream) -> None:
        try:
            if self.handler is None:
                await stream.reject("this side serves no streams")
            else:
                await self.handler(stream)
        except StreamReset:
            pass
        except Exception as exc:
            log.exception("tunnel stream %s (%s) failed", stream.id, stream.request)
            await stream.reset(f"{type(exc).__name__}: {exc}")
        finally:
            if not stream.accepted.done():
                await stream.reject("the stream was not served")
            elif not stream.eof_sent:
                await stream.reset("the stream ended")
            self.forget(stream)

    async def cancel_tasks(self, *, grace_s: float = 0.0) -> None:
        """Cancel the stream handlers still running (the link is gone), after letting them
        end on their own for up to `grace_s` (their streams are reset already)."""
        tasks = list(self._tasks)
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
