"""The device's tunnel on its LAN, opened only when configured (config.json `lanTunnelPort`,
or the EDGEFLEET_LAN_TUNNEL_PORT environment variable, which overrides it):
a gateway device on the same LAN forwards the server's sessions here, so a device that cannot
reach the server is still reachable. The first message must carry the device's supervisor API
key (the server has it from the device's reports)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
from collections.abc import Callable

from edgefleet.device.logs import LogSink
from edgefleet.device.tunnel.sessions import SessionContext, serve
from edgefleet.tunnel.framing import SocketTransport
from edgefleet.tunnel.mux import Mux
from edgefleet.tunnel.stream import Stream

ENV = "EDGEFLEET_LAN_TUNNEL_PORT"


def lan_port(configured: int | None = None) -> int | None:
    """The LAN listener's port, or None for no listener: EDGEFLEET_LAN_TUNNEL_PORT when set to
    a number (0 turns the listener off), else config.json's `lanTunnelPort` (`configured`)."""
    value = os.environ.get(ENV, "").strip()
    if value.isdigit():
        return int(value) if 0 < int(value) < 65536 else None
    return configured


async def serve_lan(*, port: int, api_key: Callable[[], str | None], ctx: SessionContext,
                    logs: LogSink, host: str = "0.0.0.0") -> None:
    """Listen on the LAN until cancelled."""
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = SocketTransport(reader, writer)
        try:
            hello = json.loads(await asyncio.wait_for(transport.recv(), timeout=10))
            key = api_key()
            if not key or not hmac.compare_digest(str(hello.get("key", "")), key):
                await transport.send(b'{"error": "wrong key"}')
                return
            await transport.send(b'{"ok": true}')
        except Exception:
            writer.close()
            return

        async def handler(stream: Stream) -> None:
            await serve(stream, ctx=ctx)

        mux = Mux(transport, initiator=False, handler=handler)
        try:
            await mux.run()
        finally:
            await mux.cancel_tasks()
            writer.close()

    try:
        server = await asyncio.start_server(session, host, port)
    except OSError as exc:
        logs.system(f"LAN tunnel cannot listen on {host}:{port}: {exc}", error=True)
        return
    logs.system(f"LAN tunnel listening on {host}:{port}")
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
