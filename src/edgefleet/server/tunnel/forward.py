"""Several server processes on one database: a user's session that arrives at a process not
holding the device's tunnel is forwarded to the process that does (its URL is in the
device's row), with the user's own credentials, so that process checks access and audits."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import websockets
from fastapi import Request, WebSocket
from fastapi.responses import Response
from starlette.websockets import WebSocketDisconnect

FORWARDED = "x-edgefleet-forwarded"
"""Set on forwarded requests: a process never forwards a request twice."""


def holder(*, tunnel_host: str, own_url: str, headers: dict[str, str] | object) -> str | None:
    """The process to forward to, or None (the tunnel is here, nowhere, or this request was
    forwarded already)."""
    forwarded = getattr(headers, "get", lambda _k: None)(FORWARDED)
    if forwarded or not tunnel_host or tunnel_host.rstrip("/") == own_url:
        return None
    return tunnel_host.rstrip("/")


class HostGone(Exception):
    """The process named as the tunnel's holder refuses connections (it crashed or stopped):
    the device has no live tunnel there."""


async def forward_websocket(websocket: WebSocket, *, host: str) -> None:
    """Join an accepted user websocket to the same path and query on `host`, message for
    message (text stays text), with the user's credentials (token or dashboard session);
    its origin is `host` itself, since this process checked the browser's already.
    HostGone, with the websocket left open, if nothing listens at `host`."""
    url = host.replace("http://", "ws://").replace("https://", "wss://") + websocket.url.path
    if websocket.url.query:
        url += "?" + websocket.url.query
    headers = {FORWARDED: "1"}
    for name in ("authorization", "cookie"):
        if name in websocket.headers:
            headers[name] = websocket.headers[name]
    try:
        upstream = await websockets.connect(url, additional_headers=headers,
                                            origin=websockets.Origin(host),
                                            max_size=1 << 24, compression=None,
                                            open_timeout=20)
    except ConnectionRefusedError:
        raise HostGone(host) from None
    except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
        await websocket.close(code=4502, reason=f"the server process holding the "
                                                f"tunnel is unreachable: {exc}"[:120])
        return

    async def down() -> None:
        async for message in upstream:
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)

    async def up() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            else:
                await upstream.send(message.get("text") or "")

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception, WebSocketDisconnect):
                await task
        code, reason = upstream.close_code, upstream.close_reason
        await upstream.close()
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(code=code if code and code >= 4000 else 1000,
                                  reason=reason or "")


async def forward_http(request: Request, *, host: str) -> Response:
    """Repeat a user API request on `host` and pass its answer back (HostGone if nothing
    listens there)."""
    headers = {FORWARDED: "1", "Content-Type": request.headers.get("content-type",
                                                                   "application/json")}
    if "authorization" in request.headers:
        headers["Authorization"] = request.headers["authorization"]
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0)) as http:
        try:
            r = await http.request(request.method, host + request.url.path,
                                   params=dict(request.query_params), headers=headers,
                                   content=await request.body())
        except httpx.ConnectError:
            raise HostGone(host) from None
    return Response(r.content, status_code=r.status_code,
                    media_type=r.headers.get("content-type"))
