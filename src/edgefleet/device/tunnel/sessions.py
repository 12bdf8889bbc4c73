"""Serving the streams the server opens: which session each request starts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from edgefleet.device.tunnel.host import host_command, host_shell
from edgefleet.device.tunnel.service import service_session
from edgefleet.engine.errors import EngineError
from edgefleet.tunnel.sockets import open_socket
from edgefleet.tunnel.splice import join_socket
from edgefleet.tunnel.stream import Stream

CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SessionContext:
    """What sessions need from the device: its engine and the scope of its containers."""

    engine_socket: str
    scope: str


async def serve(stream: Stream, *, ctx: SessionContext) -> None:
    """Start the session `stream.request` asks for (reject it with a reason if impossible)."""
    req = stream.request
    kind = req.get("kind")
    service = req.get("service")
    command = req.get("command") or None
    try:
        if kind == "tcp":
            await tcp(stream, host=str(req.get("host", "127.0.0.1")), port=int(req["port"]))
        elif kind in ("shell", "command") and service:
            await service_session(stream, socket=ctx.engine_socket, scope=ctx.scope,
                                  service=str(service), command=command,
                                  tty=kind == "shell", rows=int(req.get("rows", 24)),
                                  cols=int(req.get("cols", 80)),
                                  term=str(req.get("term", "xterm")))
        elif kind == "shell":
            await host_shell(stream, command=command, rows=int(req.get("rows", 24)),
                             cols=int(req.get("cols", 80)), term=str(req.get("term", "xterm")))
        elif kind == "command" and command:
            await host_command(stream, command=command)
        else:
            await stream.reject(f"this device cannot serve a {kind!r} stream")
    except EngineError as exc:
        if not stream.accepted.done():
            await stream.reject(str(exc))
        else:
            raise


async def tcp(stream: Stream, *, host: str, port: int) -> None:
    """A TCP connection from the device to host:port (a device port or one on its LAN)."""
    try:
        sock = await asyncio.wait_for(open_socket(host, port), timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        await stream.reject(f"cannot connect to {host}:{port} from the device: {why}")
        return
    await stream.accept()
    await join_socket(stream, sock)
