"""The user's end of remote access (for the CLI): a websocket to the server's relay, streams
to a device, and the local plumbing of `edgefleet ssh` and `edgefleet tunnel`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import websockets

from edgefleet.client import Login
from edgefleet.tunnel.mux import Mux, StreamRefused
from edgefleet.tunnel.sockets import SocketPipe, serve_sockets
from edgefleet.tunnel.splice import join_socket
from edgefleet.tunnel.stream import Stream, StreamReset
from edgefleet.tunnel.websocket import (
    WRITE_LIMIT,
    ChunkedClientConnection,
    WebsocketsTransport,
)

READ_SIZE = 64 * 1024


class RemoteError(Exception):
    """Remote access failed; `str()` says why, for a person."""


def relay_url(login: Login, device: str) -> str:
    base = login.url.rstrip("/")
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if base.startswith(plain):
            base = secure + base[len(plain):]
    return f"{base}/api/v1/devices/{device}/tunnel"


@dataclass
class Remote:
    """An open relay to one device."""

    mux: Mux
    connection: Any

    def why_closed(self) -> str | None:
        code = getattr(self.connection, "close_code", None)
        reason = getattr(self.connection, "close_reason", None)
        if code is not None and code >= 4000:
            return f"{reason} (HTTP {code - 4000})"
        return None

    async def open(self, request: dict[str, Any]) -> Stream:
        try:
            return await self.mux.open(request)
        except (StreamRefused, StreamReset) as exc:
            raise RemoteError(self.why_closed() or str(exc)) from None


@asynccontextmanager
async def connect(login: Login, device: str) -> AsyncIterator[Remote]:
    """A relay to `device` through the server of `login`."""
    try:
        conn = await websockets.connect(
            relay_url(login, device), additional_headers={"Authorization":
                                                          f"Bearer {login.token}"},
            max_size=1 << 20, compression=None, write_limit=WRITE_LIMIT, open_timeout=30,
            create_connection=ChunkedClientConnection,
            ping_interval=20, ping_timeout=60)
    except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
        raise RemoteError(f"cannot open the relay at {login.url}: {exc}") from None
    mux = Mux(WebsocketsTransport(conn), initiator=True)
    mux.close_reason = "the connection to the server closed"
    runner = asyncio.create_task(mux.run())
    try:
        await asyncio.sleep(0)
        yield Remote(mux=mux, connection=conn)
    finally:
        await mux.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(runner, timeout=5)


async def _stdin_to(stream: Stream, fd: int) -> None:
    """Local input into the stream, then EOF. A terminal or pipe is read when it is readable
    (no thread left blocked in a read when the session ends); a file in a thread."""
    loop = asyncio.get_running_loop()
    if stat.S_ISREG(os.fstat(fd).st_mode):
        async def read() -> bytes:
            return await loop.run_in_executor(None, os.read, fd, READ_SIZE)
    else:
        ready = asyncio.Event()

        async def read() -> bytes:
            ready.clear()
            loop.add_reader(fd, ready.set)
            try:
                await ready.wait()
            finally:
                loop.remove_reader(fd)
            return os.read(fd, READ_SIZE)
    while True:
        data = await read()
        if not data:
            await stream.write_eof()
            return
        await stream.write(data)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


async def pipe_stream(stream: Stream, *, stdin: int | None, stdout: int, stderr: int) -> int:
    """Copy local fds to and from a stream until the remote side ends; its exit code."""
    loop = asyncio.get_running_loop()
    sender = asyncio.create_task(_stdin_to(stream, stdin)) if stdin is not None else None
    if sender is None:
        await stream.write_eof()
    code: int | None = None
    try:
        while True:
            chunk = await stream.read()
            if chunk.kind == "data":
                await loop.run_in_executor(None, _write_all, stdout, chunk.data)
            elif chunk.kind == "stderr":
                await loop.run_in_executor(None, _write_all, stderr, chunk.data)
            elif chunk.kind == "exit":
                code = chunk.code
            elif chunk.kind == "eof":
                break
    except StreamReset as exc:
        raise RemoteError(f"the session ended: {exc}") from None
    finally:
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, StreamReset, OSError):
                await sender
    if code is None:
        raise RemoteError("the session ended without an exit status")
    return code


async def run_command(login: Login, *, device: str, service: str | None,
                      command: str, route: dict[str, Any] | None = None) -> int:
    """`edgefleet ssh DEVICE [SERVICE] -- COMMAND`: byte-exact stdin and stdout; `route`
    (`{via, ip}`) reaches the device through a gateway device."""
    async with connect(login, device) as remote:
        stream = await remote.open({"kind": "command", "service": service,
                                    "command": command, **(route or {})})
        return await pipe_stream(stream, stdin=0, stdout=1, stderr=2)


@dataclass(frozen=True)
class Forward:
    """LOCAL -> HOST:REMOTE, as seen from the device."""

    local: int
    host: str
    remote: int


def parse_forward(spec: str) -> Forward:
    """`LOCAL:REMOTE` or `LOCAL:HOST:REMOTE` (ValueError with a message otherwise)."""
    parts = spec.split(":")
    if len(parts) == 2:
        parts = [parts[0], "127.0.0.1", parts[1]]
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit() or not parts[1]:
        raise ValueError(f"{spec!r}: expected LOCAL:REMOTE or LOCAL:HOST:REMOTE "
                         "(e.g. 8080:80 or 8080:192.168.1.20:80)")
    local, remote = int(parts[0]), int(parts[2])
    if not (0 <= local <= 65535 and 0 < remote <= 65535):
        raise ValueError(f"{spec!r}: ports are 1-65535 (LOCAL may be 0: any free port)")
    return Forward(local=local, host=parts[1], remote=remote)


async def forward_ports(login: Login, *, device: str, forwards: list[Forward],
                        bind: str = "127.0.0.1", ready: Any = None) -> None:
    """Listen on each local port; every connection becomes a TCP stream on the device.
    `ready(list of (forward, bound port))` is called once listening."""
    async with connect(login, device) as remote:
        servers = []
        for fwd in forwards:
            async def handle(sock: SocketPipe, fwd: Forward = fwd) -> None:
                try:
                    stream = await remote.open({"kind": "tcp", "host": fwd.host,
                                                "port": fwd.remote})
                except RemoteError as exc:
                    print(f"edgefleet tunnel: {fwd.local} -> {fwd.host}:{fwd.remote}: {exc}",
                          flush=True)
                    sock.close()
                    return
                await join_socket(stream, sock)

            servers.append(await serve_sockets(handle, bind, fwd.local))
        bound = [(f, s.sockets[0].getsockname()[1]) for f, s in zip(forwards, servers,
                                                                      strict=True)]
        if ready is not None:
            ready(bound)
        try:
            await remote.mux.closed.wait()
            raise RemoteError(remote.why_closed() or remote.mux.close_reason)
        finally:
            for srv in servers:
                srv.close()
