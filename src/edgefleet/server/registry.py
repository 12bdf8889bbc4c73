"""The registry the server pushes release images to: Debian's `docker-registry`, started by
the server (config and storage in its data dir), or one given by address."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


class RegistryError(RuntimeError):
    """The registry could not be started or does not answer."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry_up(address: str, *, timeout: float = 2.0) -> bool:
    """Whether `host:port` answers the registry API (`GET /v2/` → 200)."""
    try:
        return httpx.get(f"http://{address}/v2/", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class OwnRegistry:
    """A `docker-registry` process the server started; `stop()` ends it."""

    address: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_registry(*, data_dir: Path, port: int = 0, binary: str = "docker-registry",
                   wait_s: float = 15.0) -> OwnRegistry:
    """Start `docker-registry serve` on 127.0.0.1:<port> with storage in `<data_dir>/registry`.

    Loopback registries need no TLS: dockerd treats 127.0.0.0/8 as insecure-allowed.
    """
    exe = shutil.which(binary)
    if exe is None:
        raise RegistryError(f"{binary!r} is not installed (Debian package docker-registry); "
                            "install it or pass --registry HOST:PORT")
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    storage = data_dir / "registry"
    storage.mkdir(parents=True, exist_ok=True)
    config = data_dir / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {storage}}}\n  delete: {{enabled: true}}\n"
        f"http: {{addr: {address}}}\n")
    log = (data_dir / "registry.log").open("ab")
    proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + wait_s
    while not registry_up(address, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            OwnRegistry(address, proc).stop()
            tail = (data_dir / "registry.log").read_text(errors="replace")[-2000:]
            raise RegistryError(f"docker-registry did not start on {address}: {tail}")
        time.sleep(0.1)
    return OwnRegistry(address=address, process=proc)
