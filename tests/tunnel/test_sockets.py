"""The spliced-socket protocol: bytes come out in order and whole, reading pauses while the
stream side does not read (bounded memory), and half-close passes through."""

from __future__ import annotations

import asyncio
import hashlib
import os

from edgefleet.tunnel.sockets import READ_LIMIT, SocketPipe, open_socket, serve_sockets


async def test_a_slow_reader_pauses_the_socket_and_loses_nothing() -> None:
    served: asyncio.Queue[SocketPipe] = asyncio.Queue()
    done = asyncio.Event()

    async def handler(pipe: SocketPipe) -> None:
        await served.put(pipe)
        await done.wait()

    server = await serve_sockets(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    data = os.urandom(16 << 20)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(served.get(), timeout=10)
    writer.write(data)
    await asyncio.sleep(0.5)  # the sender fills what it can while nobody reads
    held = pipe._queued
    assert held <= READ_LIMIT + (256 << 10), f"{held} bytes held while not reading"
    writer.write_eof()
    got = hashlib.sha256()
    size = 0
    while chunk := await asyncio.wait_for(pipe.read(), timeout=10):
        got.update(chunk)
        size += len(chunk)
    assert size == len(data) and got.digest() == hashlib.sha256(data).digest()
    pipe.write(b"bye")  # the other direction is still open after the peer's EOF
    await pipe.drain()
    pipe.write_eof()
    assert await asyncio.wait_for(reader.read(), timeout=10) == b"bye"
    done.set()
    writer.close()
    server.close()


async def test_open_socket_reads_until_the_peer_closes() -> None:
    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"hello")
        await w.drain()
        w.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    pipe = await open_socket("127.0.0.1", server.sockets[0].getsockname()[1])
    assert await asyncio.wait_for(pipe.read(), timeout=10) == b"hello"
    assert await asyncio.wait_for(pipe.read(), timeout=10) == b""
    assert await asyncio.wait_for(pipe.read(), timeout=10) == b"", "EOF stays EOF"
    pipe.close()
    server.close()
