"""The SSH front door (asyncssh): the plain OpenSSH client reaches devices the way balena's
proxy lets it: `host <uuid>` (host shell), `host -s <uuid> CMD` (a command, e.g. `cat` to
copy files), `enter <uuid> <service> [CMD]`. Keys are the users' registered SSH keys; every
session goes through the same relay (access check, audit) as `edgefleet ssh`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
from pathlib import Path
from typing import Any

import asyncssh
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.access import user_device
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel.hub import TunnelHub
from edgefleet.server.tunnel.routes import relay_stream
from edgefleet.server.tunnel.ssh_keys import key_owner
from edgefleet.tunnel.mux import Mux, StreamRefused
from edgefleet.tunnel.pipe import pipe
from edgefleet.tunnel.stream import Stream, StreamReset

log = logging.getLogger(__name__)
USAGE = ("usage: host <uuid> | host -s <uuid> COMMAND | enter <uuid> <service> [COMMAND]\n")


SERVICE_SHELL = "if [ -x /bin/bash ]; then exec /bin/bash; else exec /bin/sh; fi"
"""A service's shell, run without a terminal when the client asked for none (as OpenSSH runs
`ssh host < script`): `echo 'ls; exit' | balena device ssh <uuid> main`."""


class UsageError(Exception):
    """The SSH command is not one this front door knows."""


def parse_command(command: str | None) -> tuple[str, str | None, str | None]:
    """(device, service or None, command or None) from `host ...` / `enter ...`. The
    command is the rest of the line as sent, for the device's shell to read (balena CLI
    sends `host <uuid> "$(...)" ps --format "{{.ID}} {{.Names}}"`); a rest that is one
    quoted word is that word (`host -s <uuid> 'echo a; exit 3'`)."""
    raw = command or ""
    words = shlex.split(raw)
    if len(words) >= 2 and words[0] == "host":
        skip = 3 if words[1] == "-s" else 2
        if len(words) < skip:
            raise UsageError(USAGE)
        return words[skip - 1], None, _rest(raw, words, skip)
    if len(words) >= 3 and words[0] == "enter":
        return words[1], words[2], _rest(raw, words, 3)
    raise UsageError(USAGE)


def _rest(raw: str, words: list[str], skip: int) -> str | None:
    """What follows the first `skip` words of `raw`, unchanged (or its one word)."""
    if len(words) <= skip:
        return None
    if len(words) == skip + 1:
        return words[skip]
    return _LEADING[skip].sub("", raw, count=1).strip() or None


_LEADING = {n: re.compile(r"^\s*" + r"\S+\s+" * n) for n in (2, 3)}
"""The first n words of a line (device references and service names hold no quotes)."""


class _Server(asyncssh.SSHServer):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.user: keys.UserPrincipal | None = None

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        fingerprint = key.get_fingerprint("sha256")
        self.user = await run_in_threadpool(key_owner, self.state.db, username=username,
                                            fingerprint=fingerprint)
        return self.user is not None


class SshFrontDoor:
    """An SSH server on `port`, serving sessions through the hub of this process."""

    def __init__(self, *, state: ServerState, hub: TunnelHub, host: str, port: int,
                 host_key: Path) -> None:
        self.state, self.hub, self.host, self.port = state, hub, host, port
        self.host_key = host_key
        self._server: asyncssh.SSHAcceptor | None = None

    def _key(self) -> asyncssh.SSHKey:
        if self.host_key.exists():
            return asyncssh.read_private_key(self.host_key)
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key.parent.mkdir(parents=True, exist_ok=True)
        key.write_private_key(self.host_key)
        self.host_key.chmod(0o600)
        return key

    async def start(self) -> None:
        servers: dict[int, _Server] = {}

        def factory() -> _Server:
            srv = _Server(self.state)
            servers[id(srv)] = srv
            return srv

        async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
            conn_server = process.get_extra_info("connection").get_owner()
            user = getattr(conn_server, "user", None)
            servers.pop(id(conn_server), None)
            try:
                code = await self._session(process, user)
            except UsageError as exc:
                process.stderr.write(str(exc).encode())
                code = 2
            except Exception as exc:  # a person reads this on their terminal
                log.exception("ssh session failed")
                process.stderr.write(f"error: {exc}\n".encode())
                code = 1
            process.exit(code)

        self._server = await asyncssh.create_server(
            factory, self.host, self.port, server_host_keys=[self._key()],
            process_factory=handle, encoding=None, line_editor=False)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _session(self, process: asyncssh.SSHServerProcess[bytes],
                       user: keys.UserPrincipal | None) -> int:
        if user is None:
            raise UsageError("error: not authenticated\n")
        device_ref, service, command = parse_command(process.command)

        def find() -> t.Device:
            with self.state.db.session() as s:
                return user_device(s, user=user, uuid=device_ref)

        try:
            device = await run_in_threadpool(find)
        except HTTPException as exc:
            process.stderr.write(f"error: {exc.detail}\n".encode())
            return 1
        size = process.get_terminal_size()
        if command is None and service and process.get_terminal_type() is None:
            command = SERVICE_SHELL  # no terminal asked for (stdin piped): no TTY either
        interactive = command is None
        request: dict[str, Any] = {"kind": "shell" if interactive else "command",
                                   "service": service, "command": command}
        if interactive:
            request.update(rows=size[1] or 24, cols=size[0] or 80,
                           term=process.get_terminal_type() or "xterm")
        near, far = pipe()

        async def relay(stream: Stream) -> None:
            await relay_stream(state=self.state, hub=self.hub, user=user, device=device,
                               stream=stream)

        client = Mux(near, initiator=True)
        server = Mux(far, initiator=False, handler=relay)
        tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
        try:
            try:
                stream = await client.open(request)
            except StreamRefused as exc:
                process.stderr.write(f"error: {exc}\n".encode())
                return 1
            return await _pump(process, stream)
        finally:
            await client.close()
            await server.close()
            await server.cancel_tasks(grace_s=5)
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _pump(process: asyncssh.SSHServerProcess[bytes], stream: Stream) -> int:
    async def up() -> None:
        while True:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged as change:
                await stream.resize(rows=change.height, cols=change.width)
                continue
            except asyncssh.BreakReceived:
                continue
            if not data:
                await stream.write_eof()
                return
            await stream.write(data)

    sender = asyncio.create_task(up())
    code = 255
    try:
        while True:
            chunk = await stream.read()
            if chunk.kind == "data":
                process.stdout.write(bytes(chunk.data))
                await process.stdout.drain()
            elif chunk.kind == "stderr":
                process.stderr.write(bytes(chunk.data))
                await process.stderr.drain()
            elif chunk.kind == "exit":
                code = chunk.code
            elif chunk.kind == "eof":
                return code
    except StreamReset as exc:
        process.stderr.write(f"\r\nthe session ended: {exc}\r\n".encode())
        return 255
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, StreamReset, Exception):
            await sender
