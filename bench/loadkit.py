"""Load-generator kit: a minimal HTTP/1.1 keep-alive client on asyncio streams (so the load
generator spends as little CPU per request as possible: it shares the 2 cores with the server
it measures), phases with latency percentiles, and the bare-ASGI floor."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx


class Conn:
    """One keep-alive connection; `request` sends and reads one response (Content-Length or
    chunked bodies)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self._open()
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body or method in ("POST", "PATCH", "PUT"):
            head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if "content-length" in hdrs:
            data = await self.reader.readexactly(int(hdrs["content-length"]))
        elif hdrs.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            data = b"".join(parts)
        else:
            data = b""
        return status, hdrs, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Phase:
    name: str
    count: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        s = sorted(self.latencies_ms)
        return s[min(len(s) - 1, int(q * len(s)))]


async def run_phase(name: str, seconds: float, conns: list[Conn],
                    op: Callable[[Conn, int], Awaitable[int]], total: int | None = None
                    ) -> Phase:
    """One worker per connection calls `op(conn, i)` back to back, for `seconds` or until
    `total` calls are made; latency per call, errors = statuses >= 400 (or unexpected)."""
    lat: list[float] = []
    errors = 0
    count = 0
    stop = time.perf_counter() + seconds
    next_i = 0

    async def worker(conn: Conn) -> None:
        nonlocal errors, count, next_i
        while (total is None and time.perf_counter() < stop) or (
                total is not None and next_i < total):
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            status = await op(conn, i)
            lat.append((time.perf_counter() - t0) * 1000)
            count += 1
            errors += status >= 400

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    return Phase(name, count, time.perf_counter() - t0, lat, errors)


FLOOR_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", b'"x"')]})
    await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def measure_floor(seconds: float, concurrency: int) -> Phase:
    """The same conditional-poll load against a bare uvicorn ASGI app answering 304: the
    floor (HTTP parsing and the event loop) that the server's poll path is compared to."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)

        async def run() -> Phase:
            conns = [Conn("127.0.0.1", port) for _ in range(concurrency)]

            async def poll(c: Conn, i: int) -> int:
                status, _, _ = await c.request("GET", f"/device/v3/{uuid.uuid4().hex}/state", {
                    "Authorization": "Bearer x", "If-None-Match": '"x"'})
                return 200 if status == 304 else 599

            phase = await run_phase("floor: bare uvicorn app answering 304", seconds, conns,
                                    poll)
            for c in conns:
                c.close()
            return phase

        return asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
