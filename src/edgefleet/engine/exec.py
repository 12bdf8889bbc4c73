"""Commands inside a container through the engine's exec API: create, start with the
connection hijacked into a raw byte stream (stdin, stdout/stderr), resize, exit code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
from dataclasses import dataclass
from typing import Any

from edgefleet.engine.dockerhttp import API, client, json_call
from edgefleet.engine.errors import EngineError, NotFound
from edgefleet.model.naming import SCOPE, SERVICE_NAME


async def service_container(*, socket: str, scope: str, service: str) -> str:
    """The id of the running container of `service` (NotFound if there is none)."""
    filters = json.dumps({"label": [f"{SERVICE_NAME}={service}", f"{SCOPE}={scope}"],
                          "status": ["running"]})
    async with client(socket) as http:
        found = await json_call(http, f"service {service}", "GET", "containers/json",
                                params={"filters": filters})
    if not found:
        raise NotFound(f"service {service}", f"no running container of service {service!r}"
                       " on this device", status=404)
    return str(found[0]["Id"])


@dataclass
class ExecSession:
    """A started exec: write stdin, read output, resize, and learn the exit code."""

    socket: str
    exec_id: str
    tty: bool
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def read(self) -> tuple[int, bytes]:
        """(1 stdout | 2 stderr, bytes); (0, b"") at the end. With a TTY all is stdout."""
        if self.tty:
            data = await self.reader.read(64 * 1024)
            return (1, data) if data else (0, b"")
        try:
            header = await self.reader.readexactly(8)
            size = struct.unpack(">I", header[4:])[0]
            data = await self.reader.readexactly(size)
        except asyncio.IncompleteReadError:
            return 0, b""
        return (2 if header[0] == 2 else 1), data

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            if self.writer.can_write_eof():
                self.writer.write_eof()

    async def resize(self, *, rows: int, cols: int) -> None:
        async with client(self.socket) as http:
            with contextlib.suppress(EngineError):
                await json_call(http, "exec", "POST", f"exec/{self.exec_id}/resize",
                                params={"h": str(rows), "w": str(cols)})

    async def inspect(self) -> dict[str, Any]:
        async with client(self.socket) as http:
            return dict(await json_call(http, "exec", "GET",
                                        f"exec/{self.exec_id}/json"))

    async def exit_code(self) -> int:
        """The command's exit code (waits briefly for the engine to notice the end)."""
        for _ in range(50):
            info = await self.inspect()
            if not info.get("Running"):
                code = info.get("ExitCode")
                return int(code) if code is not None else -1
            await asyncio.sleep(0.1)
        return -1

    async def kill(self) -> None:
        """End the command if it still runs (the link to its user is gone)."""
        self.writer.close()
        with contextlib.suppress(Exception):
            info = await self.inspect()
            if info.get("Running") and info.get("Pid"):
                os.kill(int(info["Pid"]), signal.SIGKILL)


async def start_exec(*, socket: str, container: str, cmd: list[str], tty: bool,
                     env: list[str] | None = None, rows: int = 24,
                     cols: int = 80) -> ExecSession:
    """Create and start an exec in `container`, its stdio on a hijacked connection."""
    body = {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": tty,
            "Cmd": cmd, "Env": env or []}
    if tty:
        body["ConsoleSize"] = [rows, cols]
    async with client(socket) as http:
        created = await json_call(http, f"container {container[:12]}", "POST",
                                  f"containers/{container}/exec", data=body)
    exec_id = str(created["Id"])
    reader, writer = await asyncio.open_unix_connection(socket)
    payload = json.dumps({"Detach": False, "Tty": tty}).encode()
    writer.write((f"POST {API}/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
                  "Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                  f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
    if status not in (b"101", b"200"):
        writer.close()
        raise EngineError(f"exec {exec_id[:12]}", head.decode(errors="replace").strip(),
                          status=int(status) if status.isdigit() else 500)
    return ExecSession(socket=socket, exec_id=exec_id, tty=tty, reader=reader, writer=writer)
