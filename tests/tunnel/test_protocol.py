"""The tunnel protocol over an in-memory pipe and over a real websocket on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets

from edgefleet.tunnel.frames import HEADER, Kind
from edgefleet.tunnel.mux import Mux, StreamRefused, Transport
from edgefleet.tunnel.pipe import pipe
from edgefleet.tunnel.stream import Stream, StreamReset
from edgefleet.tunnel.websocket import WebsocketsTransport

WINDOW = 64 * 1024


async def echo(stream: Stream) -> None:
    """Serve: `echo` streams back data, `fail` refuses, `cmd` answers with stderr and exit."""
    kind = stream.request.get("kind")
    if kind == "fail":
        await stream.reject("no such thing")
        return
    await stream.accept()
    if kind == "cmd":
        await stream.write(b"out")
        await stream.write(b"err", stderr=True)
        await stream.send_exit(3)
        await stream.write_eof()
        return
    while (chunk := await stream.read()).kind != "eof":
        if chunk.kind == "data":
            await stream.write(chunk.data)
    await stream.write_eof()


@asynccontextmanager
async def linked(a: Transport, b: Transport, **kw: Any) -> AsyncIterator[tuple[Mux, Mux]]:
    client = Mux(a, initiator=True, window=WINDOW)
    device = Mux(b, initiator=False, handler=echo, window=WINDOW, **kw)
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(device.run())]
    try:
        yield client, device
    finally:
        await client.close()
        await device.close()
        await asyncio.wait(tasks, timeout=5)


async def read_all(stream: Stream) -> tuple[bytes, bytes, int | None]:
    out, err, code = b"", b"", None
    while (chunk := await stream.read()).kind != "eof":
        if chunk.kind == "data":
            out += chunk.data
        elif chunk.kind == "stderr":
            err += chunk.data
        elif chunk.kind == "exit":
            code = chunk.code
    return out, err, code


async def test_streams_carry_data_stderr_exit_and_refusals() -> None:
    a, b = pipe()
    async with linked(a, b) as (client, _device):
        stream = await client.open({"kind": "cmd"})
        assert await read_all(stream) == (b"out", b"err", 3)
        with pytest.raises(StreamRefused, match="no such thing"):
            await client.open({"kind": "fail"})
        assert await client.ping() >= 0


async def test_many_concurrent_streams_keep_their_bytes_apart() -> None:
    a, b = pipe()
    async with linked(a, b) as (client, _device):
        async def one(i: int) -> bool:
            payload = os.urandom(100_000 + i)
            stream = await client.open({"kind": "echo"})

            async def send() -> None:
                await stream.write(payload)
                await stream.write_eof()

            sender = asyncio.create_task(send())
            out, _, _ = await read_all(stream)
            await sender
            return out == payload

        assert all(await asyncio.gather(*(one(i) for i in range(20))))


async def test_a_slow_reader_holds_the_writer_within_the_window() -> None:
    a, b = pipe(maxsize=4)
    async with linked(a, b) as (client, device):
        stream = await client.open({"kind": "echo"})
        writer = asyncio.create_task(stream.write(os.urandom(4 * 1024 * 1024)))
        await asyncio.sleep(0.3)
        assert not writer.done(), "the writer is held: nobody reads the echo"
        served = next(iter(device.streams.values()))
        assert served._buffered <= WINDOW and stream._buffered <= WINDOW
        got = 0
        while got < 4 * 1024 * 1024:
            chunk = await stream.read()
            got += len(chunk.data)
            assert stream._buffered <= WINDOW
        await writer


async def test_a_lost_link_resets_every_stream_with_a_reason() -> None:
    a, b = pipe()
    async with linked(a, b) as (client, _device):
        stream = await client.open({"kind": "echo"})
        await b.close()
        with pytest.raises(StreamReset, match="link closed"):
            await asyncio.wait_for(stream.read(), timeout=5)
        with pytest.raises(StreamReset):
            await stream.write(b"x")


async def test_over_a_real_websocket() -> None:
    served: list[Mux] = []

    async def handler(conn: Any) -> None:
        mux = Mux(WebsocketsTransport(conn), initiator=False, handler=echo, window=WINDOW)
        served.append(mux)
        await mux.run()

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}") as conn:
            client = Mux(WebsocketsTransport(conn), initiator=True, window=WINDOW)
            runner = asyncio.create_task(client.run())
            payload = os.urandom(3 * 1024 * 1024)
            stream = await client.open({"kind": "echo"})

            async def send() -> None:
                await stream.write(payload)
                await stream.write_eof()

            sender = asyncio.create_task(send())
            out, _, _ = await read_all(stream)
            await sender
            assert hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()
            await client.close()
            await runner


async def test_a_reset_from_the_peer_ends_what_serves_the_stream() -> None:
    ended = asyncio.Event()

    async def forever(stream: Stream) -> None:
        await stream.accept()
        try:
            await asyncio.Event().wait()  # e.g. a command that prints nothing
        finally:
            ended.set()

    a, b = pipe()
    client = Mux(a, initiator=True)
    device = Mux(b, initiator=False, handler=forever)
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(device.run())]
    try:
        stream = await client.open({"kind": "x"})
        await stream.reset("the user went away")
        await asyncio.wait_for(ended.wait(), timeout=5)
    finally:
        await client.close()
        await device.close()
        await asyncio.wait(tasks, timeout=5)


async def test_write_parts_sends_one_frame_or_falls_back_to_the_credit() -> None:
    """Parts that fit the credit and a frame go as one frame; more than the credit is cut
    to it (the writer waits for the rest), and every byte arrives in order."""
    a, b = pipe()
    async with linked(a, b) as (client, _device):
        stream = await client.open({"kind": "echo"})
        sent: list[bytes] = []
        send = stream._send

        async def recording(data: bytes | list[bytes | memoryview]) -> None:
            sent.append(b"".join(data) if isinstance(data, list) else data)
            await send(data)

        stream._send = recording
        parts = [b"a" * 1000, b"b" * 2000, b"c"]
        await stream.write_parts(parts)
        assert stream.bytes_out == 3001
        assert sent == [HEADER.pack(Kind.DATA, stream.id) + b"".join(parts)]
        big = [os.urandom(WINDOW // 2), os.urandom(WINDOW)]  # more than the credit
        await stream.write_parts(big)
        await stream.write_eof()
        out, _err, _code = await read_all(stream)
        assert out == b"".join(parts + big)
