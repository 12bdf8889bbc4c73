"""Copying between streams and byte sockets, honouring credit at both ends."""

from __future__ import annotations

import asyncio
import contextlib

from edgefleet.tunnel.frames import MAX_PAYLOAD
from edgefleet.tunnel.sockets import SocketPipe
from edgefleet.tunnel.stream import Stream, StreamReset


async def stream_to_stream(src: Stream, dst: Stream) -> None:
    """Forward everything `src` delivers to `dst` (data, stderr, exit, resize, eof)."""
    while True:
        chunk = await src.read()
        if chunk.kind == "data":
            await dst.write(chunk.data)
        elif chunk.kind == "stderr":
            await dst.write(chunk.data, stderr=True)
        elif chunk.kind == "exit":
            await dst.send_exit(chunk.code)
        elif chunk.kind == "resize":
            await dst.resize(rows=chunk.rows, cols=chunk.cols)
        elif chunk.kind == "eof":
            await dst.write_eof()
            return


async def splice(a: Stream, b: Stream) -> str | None:
    """Join two streams until both directions ended; a reset of either resets the other.
    Returns the reset reason, or None when both sides closed cleanly."""
    reason: str | None = None

    async def one_way(src: Stream, dst: Stream) -> None:
        nonlocal reason
        try:
            await stream_to_stream(src, dst)
        except StreamReset as exc:
            reason = reason or str(exc)
            await a.reset(str(exc))
            await b.reset(str(exc))

    tasks = [asyncio.create_task(one_way(a, b)), asyncio.create_task(one_way(b, a))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return reason


async def stream_to_socket(stream: Stream, sock: SocketPipe) -> None:
    """Stream data into a socket (drained, so the socket's pace sets the credit's pace)."""
    while True:
        chunk = await stream.read()
        if chunk.kind in ("data", "stderr"):
            sock.write(chunk.data)
            await sock.drain()
        elif chunk.kind == "eof":
            sock.write_eof()
            return


async def socket_to_stream(sock: SocketPipe, stream: Stream) -> None:
    """Socket bytes into the stream, then EOF."""
    while parts := await sock.read_parts(MAX_PAYLOAD):
        await stream.write_parts(parts)
    await stream.write_eof()


async def join_socket(stream: Stream, sock: SocketPipe) -> None:
    """Carry a TCP connection over a stream until both directions end (or either fails)."""
    up = asyncio.create_task(socket_to_stream(sock, stream))
    down = asyncio.create_task(stream_to_socket(stream, sock))
    try:
        await asyncio.gather(up, down)
    except (StreamReset, OSError) as exc:
        await stream.reset(f"connection ended: {exc}")
    finally:
        for task in (up, down):
            task.cancel()
        for task in (up, down):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        sock.close()
