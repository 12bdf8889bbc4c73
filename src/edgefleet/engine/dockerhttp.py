"""HTTP to the Docker Engine API over its unix socket (httpx's async client, and its blocking
twin for builds and the preload's temporary engine), with engine errors mapped to the typed
errors of `engine.errors`. The one place an engine HTTP client is made."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx

from edgefleet.engine.errors import Conflict, EngineError, EngineUnavailable, NotFound

API = "/v1.41"
# Connecting to a unix socket is immediate or fails; reads are unbounded (pulls, stops,
# event and log streams may run for as long as they need, as with the engine's own CLI).
TIMEOUT = httpx.Timeout(None, connect=10.0)

Transport = (httpx.TransportError, OSError)


def client(socket: str) -> httpx.AsyncClient:
    """An async client whose requests go to the engine listening on `socket`."""
    # plain HTTP over a unix socket: no TLS, so no CA bundle to load (1+ MB per client)
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=socket, verify=False),
                             base_url="http://docker", timeout=TIMEOUT)


def sync_client(socket: str) -> httpx.Client:
    """The blocking twin of `client` (builds, preload's temporary engine): the same socket,
    timeouts and no-TLS transport."""
    return httpx.Client(transport=httpx.HTTPTransport(uds=socket, verify=False),
                        base_url="http://docker", timeout=TIMEOUT)


def typed_error(obj: str, status: int, body: bytes, content_type: str) -> EngineError:
    """The typed error for an engine answer with a 4xx/5xx status."""
    message = body.decode("utf-8", "replace").strip()
    if content_type.startswith("application/json"):
        with suppress(ValueError, AttributeError):
            message = str(json.loads(body).get("message", message))
    if status == 404:
        return NotFound(obj, message, status=status)
    if status == 409:
        return Conflict(obj, message, status=status)
    return EngineError(obj, message, status=status)


def unavailable(obj: str, exc: BaseException) -> EngineUnavailable:
    """The engine could not be reached at all."""
    return EngineUnavailable(obj, f"engine not reachable ({exc!r}); is dockerd running?",
                             status=900)


def request_args(*, params: dict[str, str] | None = None, data: Any = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
    """httpx keyword arguments for a JSON request (`data` as dict, str or bytes)."""
    if data is not None and not isinstance(data, str | bytes):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    return {"params": params, "content": data,
            "headers": {"Content-Type": "application/json", **(headers or {})}}


@asynccontextmanager
async def stream(http: httpx.AsyncClient, obj: str, method: str, path: str, *,
                 versioned: bool = True, **kw: Any) -> AsyncIterator[httpx.Response]:
    """An open response with a 2xx status (errors typed; body not read yet)."""
    url = f"{API}/{path}" if versioned else f"/{path}"
    try:
        async with http.stream(method, url, **request_args(**kw)) as resp:
            if resp.status_code >= 400:
                body = await resp.aread()
                raise typed_error(obj, resp.status_code, body,
                                  resp.headers.get("Content-Type", ""))
            yield resp
    except (httpx.ConnectError, httpx.ConnectTimeout, FileNotFoundError,
            ConnectionRefusedError) as exc:
        raise unavailable(obj, exc) from None


async def json_call(http: httpx.AsyncClient, obj: str, method: str, path: str,
                    **kw: Any) -> Any:
    """One call; its JSON answer (or text, or "" when empty)."""
    try:
        async with stream(http, obj, method, path, **kw) as resp:
            body = await resp.aread()
            ctype = resp.headers.get("Content-Type", "")
    except Transport as exc:
        raise EngineUnavailable(obj, f"engine connection failed: {exc!r}") from None
    if not body:
        return ""
    if "json" in ctype:
        return json.loads(body)
    return body.decode("utf-8", "replace")


class ByteReader:
    """`readexactly`/`readline` over a response's byte chunks."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = bytearray()

    async def _fill(self) -> bool:
        try:
            self._buf += await anext(self._chunks)
        except StopAsyncIteration:
            return False
        return True

    async def exactly(self, n: int) -> bytes | None:
        """The next `n` bytes, or None when the stream ends first."""
        while len(self._buf) < n:
            if not await self._fill():
                return None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def peek(self, n: int) -> bytes:
        """Up to the next `n` bytes, left to be read again."""
        while len(self._buf) < n and await self._fill():
            pass
        return bytes(self._buf[:n])

    async def line(self) -> bytes:
        """The next line with its newline; the rest at the end; b"" when exhausted."""
        while b"\n" not in self._buf:
            if not await self._fill():
                out = bytes(self._buf)
                self._buf.clear()
                return out
        cut = self._buf.index(b"\n") + 1
        out = bytes(self._buf[:cut])
        del self._buf[:cut]
        return out
