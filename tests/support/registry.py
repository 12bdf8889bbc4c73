"""A private docker-registry on an ephemeral loopback port (stoppable, unlike the shared one on
127.0.0.1:5055), a blob-level copy of images into it, and a throttling TCP proxy so a pull
lasts long enough to be interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateRegistry:
    """`docker-registry serve` with its own storage; `start()`/`stop()` keep the port."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 20) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.yml"
        cfg.write_text(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: "
                       f"{{rootdirectory: {self.root / 'data'}}}\n  delete: {{enabled: true}}\n"
                       f"http: {{addr: '{self.address}'}}\n")
        log = (self.root / "registry.log").open("ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=log,
                                     stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{self.address}/v2/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"registry on {self.address} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


def copy_image(*, src: str, dst: str, repo: str, tag: str, dst_repo: str | None = None) -> None:
    """Copy `repo:tag` blob by blob from registry `src` to registry `dst` (HTTP API only)."""
    target = dst_repo or repo
    with httpx.Client(timeout=60) as c:
        man = c.get(f"http://{src}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST})
        man.raise_for_status()
        body = man.json()
        for blob in [body["config"], *body["layers"]]:
            data = c.get(f"http://{src}/v2/{repo}/blobs/{blob['digest']}").content
            up = c.post(f"http://{dst}/v2/{target}/blobs/uploads/")
            up.raise_for_status()
            loc = up.headers["location"]
            url = loc if loc.startswith("http") else f"http://{dst}{loc}"
            sep = "&" if "?" in url else "?"
            c.put(f"{url}{sep}digest={blob['digest']}", content=data,
                  headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        c.put(f"http://{dst}/v2/{target}/manifests/{tag}", content=man.content,
              headers={"Content-Type": MANIFEST}).raise_for_status()


class ThrottleProxy:
    """Forwards 127.0.0.1:<port> to an upstream port, sending at most `rate` bytes/s back."""

    def __init__(self, *, upstream_port: int, rate: int) -> None:
        self.upstream_port = upstream_port
        self.rate = rate
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def pause(self) -> None:
        """Go away like a registry host does: refuse new connections and cut open ones."""
        await self.close()

    async def resume(self) -> None:
        """Listen again on the same port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, slow: bool) -> None:
            try:
                while data := await src.read(16384):
                    dst.write(data)
                    await dst.drain()
                    if slow:
                        await asyncio.sleep(len(data) / self.rate)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        tasks = [asyncio.create_task(pipe(reader, up_w, False)),
                 asyncio.create_task(pipe(up_r, writer, True))]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
