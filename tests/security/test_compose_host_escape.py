"""Issue 11 finding 6: a release cannot bind-mount the host or join another app's namespaces.

Hostile compose files are pushed to a real `edgefleet server run` process; each push is
refused with the reason (400) and no release is recorded. Before the fix the server accepted
them: a volume with `driver_opts: {type: none, o: bind, device: /}` became a bind of `/`, and
`network_mode: container:<anything>` joined any container.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator

import httpx
import pytest

HOSTILE = {
    "bind-volume-root": (
        "services:\n  a:\n    image: busybox\n    volumes: ['root:/host']\n"
        "volumes:\n  root:\n    driver_opts:\n      type: none\n      o: bind\n"
        "      device: /\n", "binds a host path"),
    "bind-volume-o-only": (
        "services:\n  a:\n    image: busybox\n    volumes: ['etc:/x']\nvolumes:\n  etc:\n"
        "    driver: local\n    driver_opts: {o: 'rbind,ro', device: /etc}\n",
        "binds a host path"),
    "network-container": (
        "services:\n  a:\n    image: busybox\n    network_mode: container:balena_supervisor\n",
        "not allowed"),
    "network-service-unknown": (
        "services:\n  a:\n    image: busybox\n    network_mode: 'service: other-app'\n",
        "same release"),
    "pid-container": (
        "services:\n  a:\n    image: busybox\n    pid: container:balena_supervisor\n",
        "service.pid container"),
    "ipc-service": (
        "services:\n  a:\n    image: busybox\n  b:\n    image: busybox\n    ipc: service:a\n",
        "ipc"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def project(compose: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = compose.encode()
        info = tarfile.TarInfo("docker-compose.yml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("escape")
    port = free_port()
    token_file = root / "token"
    log = root / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgefleet", "server", "run", "--data-dir", str(root / "data"),
         "--port", str(port), "--admin-token-file", str(token_file)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ping", timeout=1).text == "OK":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        token = token_file.read_text().strip()
        r = httpx.post(f"{url}/api/v1/fleets", json={"name": "escape",
                                                     "device_type": "generic-amd64"},
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def push(server: tuple[str, str], compose: str) -> httpx.Response:
    url, token = server
    r = httpx.post(f"{url}/api/v1/fleets/escape/releases", content=project(compose),
                   headers={"Authorization": f"Bearer {token}",
                            "Content-Type": "application/x-tar"}, timeout=60)
    return r


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_compose_is_refused_at_push(server: tuple[str, str], name: str) -> None:
    compose, reason = HOSTILE[name]
    r = push(server, compose)
    assert r.status_code == 400, r.text
    assert reason in r.text
    url, token = server
    releases = httpx.get(f"{url}/api/v1/fleets/escape/releases",
                         headers={"Authorization": f"Bearer {token}"}).json()
    assert releases == [], "a refused push records no release"


@pytest.mark.parametrize("compose", [
    "services: {web: [1, 2]}",
    "services: " + "[" * 20000 + "]" * 20000,
    "services:\n  web:\n    image: x\n    cpu_shares: " + "9" * 5000 + "\n",
    "services:\n  web:\n    image: {a: 1}\n",
    "services:\n  web:\n    image: \"a\\0b\"\n",
])
def test_malformed_compose_is_a_400_naming_the_problem(server: tuple[str, str],
                                                       compose: str) -> None:
    r = push(server, compose)
    assert r.status_code == 400, r.text[:300]


def test_a_service_of_the_same_release_may_be_joined(server: tuple[str, str]) -> None:
    r = push(server, "services:\n  a:\n    image: busybox\n  b:\n    image: busybox\n"
                     "    network_mode: 'service: a'\n")
    assert r.status_code == 200, r.text
    assert '"status": "success"' in r.text or '"status":"success"' in r.text, r.text
