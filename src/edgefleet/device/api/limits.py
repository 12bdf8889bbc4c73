"""Limits on what a request may send the supervisor API, applied before any route reads it:
a cap on body bytes (a declared Content-Length over the cap is refused unread, a chunked body
is counted as it arrives) and a cap on JSON nesting. Both answer in balena's error shape."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 256 * 1024
"""Bytes any request body may have..."""
MAX_BODY_BY_PATH = {"/v2/local/target-state": 8 << 20}
"""...except these (a local target state carries a whole composition)."""
MAX_DEPTH = 64
"""JSON nesting a body may have (a v2 target state needs about 10)."""

_TOKENS = re.compile(rb'"(?:\\.|[^"\\])*"|[\[\]{}]')


def too_deep(body: bytes, *, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects more than `limit` deep (strings skipped)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for m in _TOKENS.finditer(body):
        token = m.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


class BodyLimits:
    """ASGI middleware: bodies over their cap get 413, JSON nested too deep gets 400."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = MAX_BODY_BY_PATH.get(scope["path"], MAX_BODY)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            await _fail(send, 413 if declared.isdigit() else 400,
                        f"Request body of {declared.decode(errors='replace')} bytes refused: "
                        f"{scope['path']} takes at most {cap} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                await _fail(send, 413, f"Request body refused: {scope['path']} takes at most "
                            f"{cap} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if too_deep(body):
            await _fail(send, 400, f"Request body nests JSON more than {MAX_DEPTH} levels "
                        "deep")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _fail(send: Send, status: int, message: str) -> None:
    payload = json.dumps({"status": "failed", "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
