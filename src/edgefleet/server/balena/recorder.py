"""Recording what a balena client sends (ASGI middleware): one JSON line per request to the
balena API paths, with method, path, query, JSON body and status; never a header (tokens stay
out). Used to capture the real CLI's requests for `tests/compat/balena-cli/`."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIXES = ("/v7/", "/actor/", "/api-key/", "/v3/build", "/device/register", "/device/v2/",
            "/config", "/download-config", "/auth/", "/device-types/")
BODY_CAP = 65536


class Recorder:
    """Appends one JSON line per balena-API request to `path`."""

    def __init__(self, app: ASGIApp, *, path: Path) -> None:
        self.app = app
        self.path = path
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("path", "")
        if scope["type"] != "http" or not route.startswith(PREFIXES) \
                or route.endswith("/log-stream"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        entry: dict[str, Any] = {"method": scope["method"], "path": route,
                                 "query": scope.get("query_string", b"").decode("latin-1")}

        async def recv() -> Message:
            msg = await receive()
            if msg["type"] == "http.request" and sum(map(len, chunks)) < BODY_CAP:
                chunks.append(msg.get("body", b""))
            return msg

        async def snd(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                entry["status"] = msg["status"]
                self._write(entry, b"".join(chunks), route)
            await send(msg)

        await self.app(scope, recv, snd)

    def _write(self, entry: dict[str, Any], body: bytes, route: str) -> None:
        if body and not route.startswith("/v3/build"):
            try:
                doc = json.loads(body)
                if isinstance(doc, dict) and "api_key" in doc:
                    doc["api_key"] = "<redacted>"
                entry["body"] = doc
            except ValueError:
                entry["body"] = None
        with self.lock, self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
