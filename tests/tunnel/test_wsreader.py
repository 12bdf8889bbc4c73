"""ChunkReader (websockets' StreamReader interface without copying every byte in and out)
and ChunkedClientConnection.send_parts (a message written from its pieces)."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Generator
from typing import Any

import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from edgefleet.tunnel.websocket import ChunkedClientConnection, WebsocketsTransport, masked_frame
from edgefleet.tunnel.wsreader import ChunkReader


def run(gen: Generator[None, None, Any], reader: StreamReader, feed: list[bytes]) -> Any:
    """Drive a reader coroutine, feeding the next chunk whenever it waits."""
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value
        if feed:
            reader.feed_data(feed.pop(0))
        else:
            reader.feed_eof()


def ops_on(reader: StreamReader, data: bytes, cuts: list[int], sizes: list[int]) -> list[Any]:
    """The same script of reads on a reader fed `data` cut at `cuts`."""
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    feed = [data[a:b] for a, b in itertools.pairwise(bounds)]
    out: list[Any] = [bytes(run(reader.read_line(64), reader, feed))]
    for n in sizes:
        try:
            out.append(bytes(run(reader.read_exact(n), reader, feed)))
        except EOFError as exc:
            out.append(f"EOFError: {exc}")
            return out
    out.append(run(reader.at_eof(), reader, feed))
    out.append(bytes(run(reader.read_to_eof(1 << 20), reader, feed)))
    return out


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 4000), max_size=12),
       sizes=st.lists(st.integers(0, 900), max_size=8))
def test_reads_the_same_as_websockets_own_reader(body: bytes, cuts: list[int],
                                                 sizes: list[int]) -> None:
    data = b"HTTP/1.1 101 Switching Protocols\r\n" + body
    assert ops_on(ChunkReader(), data, cuts, sizes) == ops_on(StreamReader(), data, cuts,
                                                               sizes)


def test_a_payload_that_arrived_as_one_chunk_is_not_copied() -> None:
    reader = ChunkReader()
    payload = os.urandom(256 * 1024)
    reader.feed_data(payload)
    assert run(reader.read_exact(len(payload)), reader, []) is payload


def test_frames_parse_from_any_chunking() -> None:
    """Masked binary frames cut anywhere parse to their payloads (what the server reads)."""
    payloads = [os.urandom(n) for n in (0, 1, 125, 126, 70_000, 300_000)]
    wire = b"".join(Frame(Opcode.BINARY, p).serialize(mask=True) for p in payloads)
    for step in (997, 4096, 65536, len(wire)):
        reader = ChunkReader()
        feed = [wire[i:i + step] for i in range(0, len(wire), step)]
        got = [run(Frame.parse(reader.read_exact, mask=True), reader, feed).data
               for _ in payloads]
        assert got == payloads


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.binary(max_size=300), max_size=6), big=st.sampled_from([0, 70_000]))
def test_a_message_sent_as_parts_is_one_masked_frame(parts: list[bytes], big: int) -> None:
    parts = [*parts, os.urandom(big)]
    wire = masked_frame(parts, os.urandom(4))
    reader = ChunkReader()
    frame = run(Frame.parse(reader.read_exact, mask=True), reader, [wire])
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.BINARY, True, b"".join(parts))


async def test_send_parts_over_a_real_websocket() -> None:
    """A client connection writes messages given as pieces; a stock websockets server reads
    them (and the connection still answers pings and closes cleanly)."""
    got: list[bytes] = []

    async def handler(conn: ServerConnection) -> None:
        async for message in conn:
            got.append(bytes(message) if not isinstance(message, str) else message.encode())
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}", compression=None,
                                      create_connection=ChunkedClientConnection) as conn:
            transport = WebsocketsTransport(conn)
            messages: list[list[bytes | memoryview]] = [
                [b"\x04\x00\x00\x00\x01", os.urandom(300_000)], [b"a", b"bc", b""],
                [memoryview(b"xyz")[1:]]]
            for parts in messages:
                await transport.send_parts(parts)
            await conn.ping()
        for _ in range(100):
            if len(got) == len(messages):
                break
            await asyncio.sleep(0.05)
    assert got == [b"".join(bytes(p) for p in parts) for parts in messages]
