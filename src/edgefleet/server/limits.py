"""Limits every request meets before the app: a cap on request bodies, a cap on JSON nesting,
and a per-address brake on failed logins. Pure ASGI, outermost.

- A body is read into memory only up to `MAX_BODY` (413 beyond, from `Content-Length` at once
  when it is given). Endpoints that stream their body (a push upload, a device's log stream,
  the balena builder) are passed through: they cap what they read themselves.
- A body nested deeper than `MAX_JSON_DEPTH` gets a 400 before any JSON parser sees it.
- A source address whose requests got `auth_failures_per_minute` answers 401 (missing or
  unknown key) within a minute gets 429 for every request until that minute is over.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

MAX_BODY = 1 * 2**20
"""Largest request body read into memory (state reports, target states, any JSON body)."""
MAX_JSON_DEPTH = 64
STREAMING = (re.compile(r"^/api/v1/fleets/[^/]+/releases$"),
             re.compile(r"^/device/v2/[^/]+/log-stream$"),
             re.compile(r"^/v3/build$"))
"""Paths whose handlers stream and cap their own bodies."""
DRAIN_MAX = 64 * 2**20
"""An oversized body up to this size is read (and dropped) before the 413, so that the client
gets the answer rather than a broken connection."""
WINDOW_S = 60.0
MAX_TRACKED = 100_000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes, *, stop: int = MAX_JSON_DEPTH) -> int:
    """How deeply `body` nests `[` and `{` outside strings (counting stops past `stop`)."""
    brackets = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for b in brackets:
        if b in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop:
                    break
        else:
            depth -= 1
    return deepest


@dataclass
class _Failures:
    since: float
    count: int = 0


async def _answer(send: Send, status: int, detail: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Limits:
    """The middleware; `auth_failures_per_minute` comes from the server's settings."""

    def __init__(self, app: Any, auth_failures_per_minute: int) -> None:
        self.app = app
        self.allowed = auth_failures_per_minute
        self.failures: dict[str, _Failures] = {}

    def _blocked(self, addr: str, now: float) -> float:
        """Seconds until `addr` may try again (0 = now)."""
        entry = self.failures.get(addr)
        if entry is None or now - entry.since >= WINDOW_S:
            return 0.0
        return WINDOW_S - (now - entry.since) if entry.count >= self.allowed else 0.0

    def _failed(self, addr: str, now: float) -> None:
        entry = self.failures.get(addr)
        if entry is None or now - entry.since >= WINDOW_S:
            if len(self.failures) >= MAX_TRACKED:
                self.failures = {a: e for a, e in self.failures.items()
                                 if now - e.since < WINDOW_S}
            entry = self.failures[addr] = _Failures(since=now)
        entry.count += 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        addr = (scope.get("client") or ("?", 0))[0]
        now = time.monotonic()
        wait = self._blocked(addr, now)
        if wait:
            await _answer(send, 429, "too many requests with a missing or unknown key from "
                                     f"this address; try again in {wait:.0f} s",
                          [(b"retry-after", str(int(wait) + 1).encode())])
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self._failed(addr, time.monotonic())
            await send(message)

        if scope["method"] in ("GET", "HEAD", "OPTIONS") \
                or any(p.match(scope["path"]) for p in STREAMING):
            await self.app(scope, receive, watch)
            return
        body = await self._body(scope, receive, send)
        if body is None:
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # e.g. http.disconnect

        await self.app(scope, replay, watch)

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body (None when an answer was sent instead)."""
        too_large = f"the request body is larger than {MAX_BODY} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > DRAIN_MAX:
                await _answer(send, 413, too_large)
                return None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            more = bool(message.get("more_body"))
            if size > MAX_BODY:
                chunks = []
                if size > DRAIN_MAX or not more:
                    await _answer(send, 413, too_large)
                    return None
                continue
            chunks.append(chunk)
        body = b"".join(chunks)
        depth = json_depth(body) if len(body) < 65536 else \
            await asyncio.to_thread(json_depth, body)
        if depth > MAX_JSON_DEPTH:
            await _answer(send, 400, f"the request body is nested too deeply (more than "
                                     f"{MAX_JSON_DEPTH} levels)")
            return None
        return body
