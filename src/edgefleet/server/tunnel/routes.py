"""The tunnel's websockets: devices connect at `/device/v3/{uuid}/tunnel` (device key); users
open streams to a device at `/api/v1/devices/{device}/tunnel` (user token)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, HTTPException, WebSocket
from starlette.concurrency import run_in_threadpool

from edgefleet.server import audit as trail
from edgefleet.server import guard, keys
from edgefleet.server import tables as t
from edgefleet.server.access import user_device
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel import audit
from edgefleet.server.tunnel.forward import HostGone, forward_websocket, holder
from edgefleet.server.tunnel.hub import NotConnected, TunnelHub
from edgefleet.server.tunnel.requests import BadRequest, checked, describe, route
from edgefleet.server.tunnel.transport import StarletteTransport
from edgefleet.server.tunnel.via import ViaError, open_via
from edgefleet.tunnel.mux import Mux, StreamRefused
from edgefleet.tunnel.splice import splice
from edgefleet.tunnel.stream import Stream

log = logging.getLogger(__name__)


async def refuse(websocket: WebSocket, *, code: int, reason: str) -> None:
    """Accept only to close with a code (4000 + HTTP status) and a reason a client can show."""
    await websocket.accept()
    await websocket.close(code=4000 + code, reason=reason[:120])


def router(*, state: ServerState, hub: TunnelHub) -> APIRouter:
    api = APIRouter(tags=["tunnel"])

    @api.websocket("/device/v3/{uuid}/tunnel")
    async def device_tunnel(websocket: WebSocket, uuid: str) -> None:
        """A device's tunnel: one per device, authenticated with the device's key."""
        principal = await state.principal(websocket.headers.get("authorization"))
        if not isinstance(principal, keys.DevicePrincipal) or principal.uuid != uuid:
            await refuse(websocket, code=401 if principal is None else 403,
                         reason="the tunnel needs this device's own API key")
            return
        await websocket.accept()
        await hub.serve(principal=principal, transport=StarletteTransport(websocket))

    @api.websocket("/api/v1/devices/{device}/tunnel")
    async def user_tunnel(websocket: WebSocket, device: str) -> None:
        """A user's streams to one device (shell, command, TCP), relayed to its tunnel."""
        principal = await state.principal(websocket.headers.get("authorization"))
        if not isinstance(principal, keys.UserPrincipal):
            await refuse(websocket, code=401 if principal is None else 403,
                         reason="remote access needs a user token")
            return
        user = principal

        def find() -> t.Device:
            with state.db.session() as s:
                return user_device(s, user=user, uuid=device)

        try:
            target = await run_in_threadpool(find)
        except HTTPException as exc:
            await refuse(websocket, code=exc.status_code, reason=str(exc.detail))
            return
        await websocket.accept()
        elsewhere = None if hub.connected(target.id) else holder(
            tunnel_host=target.tunnel_host, own_url=state.settings.own_url,
            headers=websocket.headers)
        if elsewhere is not None:
            try:
                await forward_websocket(websocket, host=elsewhere)
                return
            except HostGone:  # that process died: streams are refused here, "not connected"
                await hub.forget_host(elsewhere)

        async def relay(stream: Stream) -> None:
            await relay_stream(state=state, hub=hub, user=user, device=target, stream=stream)

        mux = Mux(StarletteTransport(websocket), initiator=False, handler=relay)
        try:
            await mux.run()
        finally:
            await mux.cancel_tasks(grace_s=5.0)

    return api


async def relay_stream(*, state: ServerState, hub: TunnelHub, user: keys.UserPrincipal,
                       device: t.Device, stream: Stream) -> None:
    """Open the same stream on the device, join the two, and record the session."""
    try:
        request = checked(stream.request)
        gateway = route(stream.request)
    except BadRequest as exc:
        await stream.reject(str(exc))
        return
    kind, target, command = describe(request)
    if gateway is not None:
        target = f"{target} via {gateway['via']}"
    permission = STREAM_PERMISSIONS.get(kind, "device.ssh")
    if not await run_in_threadpool(lambda: guard.holds(state.db, user=user, device_id=device.id,
                                                       permissions=(permission,))):
        await run_in_threadpool(lambda: refused(state, user, device, permission, target))
        await stream.reject(f"you may not {permission} on device {device.uuid[:7]}")
        return
    session = await run_in_threadpool(lambda: audit.begin(
        state.db, user=user, device_uuid=device.uuid, kind=kind, target=target,
        command=command))
    outcome: list[str] = []
    exit_codes: list[int] = []
    close_via: Callable[[], Awaitable[None]] | None = None
    remote: Stream | None = None
    try:
        try:
            if gateway is None:
                remote = await hub.open(device_id=device.id, request=request)
            else:
                remote, close_via = await open_via(state=state, hub=hub, user=user,
                                                   device=device, route=gateway,
                                                   request=request)
        except (NotConnected, StreamRefused, ViaError) as exc:
            outcome.append(f"refused: {exc}")
            await stream.reject(f"device {device.uuid[:7]}: {exc}")
            return
        await stream.accept()
        cut: list[str] = []

        async def cut_when_access_ends() -> None:
            why = await guard.until_revoked(state.db, user=user, device_id=device.id,
                                            permissions=(permission,))
            cut.append(why)
            await stream.reset(why)
            await remote.reset(why)

        watcher = asyncio.create_task(cut_when_access_ends())
        try:
            reason = await splice(stream, _watch_exit(remote, exit_codes))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if cut:
            outcome.append(f"cut: {cut[0]}")
        elif reason and not exit_codes:
            outcome.append(f"reset: {reason}")
    except asyncio.CancelledError:
        outcome.append("cut: the user's connection to the server closed")
        raise
    finally:
        if remote is not None and not remote.finished:
            await remote.reset(outcome[0] if outcome else "the user's session ended")
        if close_via is not None:
            await close_via()
        if exit_codes and not outcome:
            outcome.append(f"exit {exit_codes[-1]}")
        result = outcome[0] if outcome else "closed"
        up, down = stream.bytes_in, stream.bytes_out
        # shielded: the record is written even if this task is cancelled meanwhile
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, lambda: audit.end(
            state.db, session_id=session, bytes_up=up, bytes_down=down, result=result)))


STREAM_PERMISSIONS = {"tcp": "device.tunnel", "shell": "device.ssh", "command": "device.ssh"}
"""The permission (`roles`) each kind of stream needs; the session lasts as long as it holds
(`guard`: a support grant's end cuts it within about a second)."""


def refused(state: ServerState, user: keys.UserPrincipal, device: t.Device, permission: str,
            target: str) -> None:
    with state.db.session() as s:
        trail.record(s, actor=user.username, action=permission, outcome="denied",
                     device=s.get(t.Device, device.id), target=target)


def _watch_exit(stream: Stream, codes: list[int]) -> Stream:
    """The stream, noting exit codes that pass through it into `codes`."""
    read = stream.read

    async def noting() -> object:
        chunk = await read()
        if chunk.kind == "exit":
            codes.append(chunk.code)
        return chunk

    stream.read = noting  # type: ignore[method-assign,assignment]
    return stream
