"""Reaching a device through a gateway device on its LAN (seed 000 §4, balena's `hostvia`):
a TCP stream from the gateway to the target's LAN tunnel port, the tunnel protocol inside it,
authenticated with the target's supervisor API key (from its last reports)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.access import user_device
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel.hub import TunnelHub
from edgefleet.tunnel.framing import StreamTransport
from edgefleet.tunnel.mux import Mux, StreamRefused, TransportClosed
from edgefleet.tunnel.stream import Stream


class ViaError(Exception):
    """The target cannot be reached through the gateway; `str()` says why."""


async def open_via(*, state: ServerState, hub: TunnelHub, user: keys.UserPrincipal,
                   device: t.Device, route: dict[str, Any],
                   request: dict[str, Any]) -> tuple[Stream, Callable[[], Awaitable[None]]]:
    """A stream of `request` on `device`, carried through the gateway `route["via"]`, and
    what closes the link to the gateway afterwards."""
    def gateway_of() -> t.Device:
        with state.db.session() as s:
            return user_device(s, user=user, uuid=route["via"], permission="device.tunnel")

    try:
        gateway = await run_in_threadpool(gateway_of)
    except HTTPException as exc:
        raise ViaError(f"gateway: {exc.detail}") from None
    reported = json.loads(device.reported or "{}")
    key = reported.get("api_secret")
    if not key:
        raise ViaError(f"device {device.uuid[:7]} never reported its supervisor API key; it "
                       "cannot be reached through a gateway")
    ip = route["ip"] or (device.ip_address.split() or [""])[0]
    if not ip:
        raise ViaError(f"device {device.uuid[:7]} reported no IP address: give --ip")
    lan = await hub.open(device_id=gateway.id,
                         request={"kind": "tcp", "host": ip, "port": route["port"]})
    transport = StreamTransport(lan)
    try:
        await transport.send(json.dumps({"key": key}).encode())
        answer = json.loads(await asyncio.wait_for(transport.recv(), timeout=15))
    except (TransportClosed, TimeoutError, ValueError) as exc:
        await lan.reset("no LAN tunnel")
        raise ViaError(f"no LAN tunnel answers at {ip}:{route['port']} behind gateway "
                       f"{gateway.uuid[:7]} ({exc or 'no answer'})") from None
    if not answer.get("ok"):
        await lan.reset("refused")
        raise ViaError(f"the LAN tunnel at {ip}:{route['port']} refused: "
                       f"{answer.get('error', 'no reason')}")
    inner = Mux(transport, initiator=True)
    runner = asyncio.create_task(inner.run())

    async def close() -> None:
        await lan.reset("the session ended")
        await inner.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(runner, timeout=5)

    try:
        return await inner.open(request), close
    except StreamRefused:
        await close()
        raise
