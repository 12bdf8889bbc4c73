"""A real `edgefleet server run` process per test module, living in a sandbox directory whose
only writable part for the server is its data dir: anything that appears or changes beside it
is a write outside the data dir."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import images
from tests.support.registry import free_port

MAX_PROJECT_MIB = 64
"""The unpacked-size cap the test servers run with (`--max-project-size`)."""


@dataclass
class SecServer:
    """A running server process, a non-admin user with one fleet, and the sandbox."""

    url: str
    proc: subprocess.Popen[bytes]
    box: Path
    data_dir: Path
    log: Path
    admin_token: str
    user_token: str = ""
    fleet: str = ""
    baseline: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = None, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.user_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def outside_data_dir(self) -> dict[str, str]:
        """Every path in the sandbox but outside the data dir, with a digest of its content."""
        out: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.box):
            here = Path(dirpath)
            if here == self.data_dir or self.data_dir in here.parents:
                dirnames[:] = []
                continue
            for name in dirnames + filenames:
                path = here / name
                if path == self.data_dir:
                    continue
                rel = str(path.relative_to(self.box))
                if path.is_symlink():
                    out[rel] = "link:" + os.readlink(path)
                elif path.is_file():
                    out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
                else:
                    out[rel] = "dir"
        return out

    def push_workdirs(self) -> list[str]:
        builds = self.data_dir / "builds"
        return sorted(p.name for p in builds.iterdir()) if builds.is_dir() else []

    def rss_kib(self, field_name: str = "VmHWM") -> int:
        """The server's resident memory (peak by default), from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field_name} for the server process")


def start_server(box: Path, *extra: str, admin_token: str = "") -> SecServer:
    """A real `edgefleet server run` in `box`; `admin_token` for a second process on a
    database whose admin exists (it writes no token file)."""
    data_dir = box / "data"
    data_dir.mkdir(parents=True)
    (box / "victim.txt").write_text("the server must not change this\n")
    (box / "neighbour").mkdir()
    (box / "neighbour" / "config").write_text("keep\n")
    port = free_port()
    log = box.parent / f"{box.name}-server.log"
    cmd = [sys.executable, "-m", "edgefleet", "server", "run", "--data-dir", str(data_dir),
           "--port", str(port), "--registry", images.REGISTRY,
           "--admin-token-file", str(data_dir / "admin.token"), *extra]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/ping", timeout=1).text == "OK":
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.1)
    token = admin_token or (data_dir / "admin.token").read_text().strip()
    return SecServer(url=url, proc=proc, box=box, data_dir=data_dir, log=log,
                     admin_token=token)


def stop_server(server: SecServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)


def add_user_and_fleet(server: SecServer) -> None:
    """An ordinary (non-admin) user owning one fleet: the attacker of these tests."""
    with server.client(server.admin_token) as admin:
        r = admin.post("/api/v1/users", json={"username": f"u{uuid.uuid4().hex[:10]}"})
        assert r.status_code == 201, r.text
        server.user_token = r.json()["token"]
    server.fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    with server.client() as user:
        r = user.post("/api/v1/fleets", json={"name": server.fleet,
                                              "device_type": "generic-amd64"})
        assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def secserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecServer]:
    box = tmp_path_factory.mktemp("secbox")
    server = start_server(box, "--max-project-size", str(MAX_PROJECT_MIB))
    try:
        add_user_and_fleet(server)
        server.baseline = server.outside_data_dir()
        yield server
    finally:
        stop_server(server)


def push_raw(server: SecServer, body: bytes, *, timeout: float = 120) -> httpx.Response:
    """POST an upload as `edgefleet push` does; the streamed answer is read to its end."""
    with server.client(timeout=timeout) as c:
        r = c.post(f"/api/v1/fleets/{server.fleet}/releases", content=body,
                   headers={"Content-Type": "application/x-tar"})
        r.read()
        return r
