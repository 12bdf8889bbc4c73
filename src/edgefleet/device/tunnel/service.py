"""Shells and commands inside a service's container (the engine's exec API)."""

from __future__ import annotations

import asyncio
import contextlib

from edgefleet.engine.exec import ExecSession, service_container, start_exec
from edgefleet.tunnel.stream import Stream, StreamReset


async def service_session(stream: Stream, *, socket: str, scope: str, service: str,
                          command: str | None, tty: bool, rows: int = 24, cols: int = 80,
                          term: str = "xterm") -> None:
    """Run a shell (tty) or `command` in the service's running container."""
    container = await service_container(socket=socket, scope=scope, service=service)
    if command:
        cmd = ["/bin/sh", "-c", command]
    else:
        cmd = ["/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash; else exec /bin/sh; fi"]
    session = await start_exec(socket=socket, container=container, cmd=cmd, tty=tty,
                               env=[f"TERM={term}"] if tty else None, rows=rows, cols=cols)
    if tty:  # the engine API this speaks (1.41) ignores ConsoleSize: size it now
        await session.resize(rows=rows, cols=cols)
    await stream.accept()
    in_task = asyncio.create_task(_pump_in(stream, session))
    finished = False
    try:
        while True:
            which, data = await session.read()
            if not data:
                break
            await stream.write(data, stderr=which == 2)
        await stream.send_exit(await session.exit_code())
        await stream.write_eof()
        finished = True
    finally:
        in_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StreamReset, Exception):
            await in_task
        if not finished:
            await session.kill()
        session.writer.close()


async def _pump_in(stream: Stream, session: ExecSession) -> None:
    while True:
        chunk = await stream.read()
        if chunk.kind == "data":
            try:
                await session.write(bytes(chunk.data))
            except (BrokenPipeError, ConnectionResetError):
                return
        elif chunk.kind == "resize":
            await session.resize(rows=chunk.rows, cols=chunk.cols)
        elif chunk.kind == "eof":
            session.close_stdin()
            return
