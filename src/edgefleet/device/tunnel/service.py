"""Shells and commands inside a service's container (the engine's exec API). The container is
named by its service, or by its id as `docker ps` on the host shows it (balena CLI's `device
ssh <uuid> <service>` lists containers on the host, then asks for `enter <uuid> <id>`)."""

from __future__ import annotations

import asyncio
import contextlib
import re

from edgefleet.engine.dockerhttp import client, json_call
from edgefleet.engine.errors import NotFound
from edgefleet.engine.exec import ExecSession, service_container, start_exec
from edgefleet.model.naming import SCOPE, SERVICE_NAME
from edgefleet.tunnel.stream import Stream, StreamReset

CONTAINER_ID = re.compile(r"^[0-9a-f]{12,64}$")


async def find_container(*, socket: str, scope: str, service: str) -> str:
    """The running container of `service`, or the container whose id (or its 12-character
    prefix) `service` is, when that is a running service container of this device's scope
    (never another supervisor's or a container the supervisor does not run)."""
    try:
        return await service_container(socket=socket, scope=scope, service=service)
    except NotFound:
        if not CONTAINER_ID.match(service):
            raise
    async with client(socket) as http:
        try:
            info = await json_call(http, f"container {service}", "GET",
                                   f"containers/{service}/json")
        except NotFound:
            info = {}
    labels = (info.get("Config") or {}).get("Labels") or {}
    if (not str(info.get("Id", "")).startswith(service) or labels.get(SCOPE) != scope
            or SERVICE_NAME not in labels or not (info.get("State") or {}).get("Running")):
        raise NotFound(f"service {service}", f"no running service or service container "
                       f"{service!r} on this device", status=404)
    return str(info["Id"])


async def service_session(stream: Stream, *, socket: str, scope: str, service: str,
                          command: str | None, tty: bool, rows: int = 24, cols: int = 80,
                          term: str = "xterm") -> None:
    """Run a shell (tty) or `command` in the service's running container."""
    container = await find_container(socket=socket, scope=scope, service=service)
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
