"""Serving the streams the server opens: which session each request starts."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

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

    def host_env(self) -> dict[str, str]:
        """The environment of host shells and commands: `docker` (and the `balena-engine` /
        `balena` names balenaOS gives it, when the host has no such program) talk to the
        engine this supervisor runs the services on."""
        path = os.environ.get("PATH", os.defpath)
        return {**os.environ, "DOCKER_HOST": f"unix://{self.engine_socket}",
                "PATH": f"{path}{os.pathsep}{_engine_shims()}"}


SHIM = '#!/bin/sh\nexec docker "$@"\n'
SHIMS = ("balena-engine", "balena")


def _engine_shims() -> str:
    """A private directory (mode 700, removed at exit) of `balena-engine` and `balena`
    scripts running `docker`: balenaOS names its engine's CLI so; edgefleet's hosts run
    Docker. A new one is made if something (a /tmp cleaner) removed it."""
    where = _SHIM_DIRS[-1] if _SHIM_DIRS else None
    if where is None or not _intact(where):
        where = Path(tempfile.mkdtemp(prefix="edgefleet-engine-"))
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        for name in SHIMS:
            (where / name).write_text(SHIM)
            (where / name).chmod(0o755)
        _SHIM_DIRS.append(where)
    return str(where)


_SHIM_DIRS: list[Path] = []


def _intact(where: Path) -> bool:
    """Still the directory made here: ours, private, with both scripts."""
    try:
        info = where.stat()
    except OSError:
        return False
    return (info.st_uid == os.getuid() and info.st_mode & 0o077 == 0
            and all((where / name).is_file() for name in SHIMS))


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
                             cols=int(req.get("cols", 80)), term=str(req.get("term", "xterm")),
                             env=ctx.host_env())
        elif kind == "command" and command:
            await host_command(stream, command=command, env=ctx.host_env())
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
