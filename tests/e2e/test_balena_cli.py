"""The real balena CLI (npm balena-cli 25.2.6, installed by scripts/setup) against an edgefleet
device in local mode on loopback: `balena push 127.0.0.1` builds a two-service project on the
device's engine (tcp://127.0.0.1:2375) and edgefleet runs it; `balena device logs 127.0.0.1`
shows the services' output; a second push after changing one service replaces only that one."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.device.api.test_runtime import start_supervisor
from tests.support import images
from tests.support.dockerd import Dockerd, new_dockerd

pytestmark = [pytest.mark.engine, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BALENA = ROOT / ".ci/work/balena-cli/node_modules/.bin/balena"
API = "http://127.0.0.1:48484"  # balena CLI always talks to port 48484
COMPOSE = """version: '2.1'
services:
  first:
    build: ./first
  second:
    build: ./second
"""


def dockerfile(name: str, version: str) -> str:
    loop = f"trap 'exit 0' TERM; while true; do echo {name} says {version}; sleep 1; done"
    return f'FROM ef-busybox:latest\nCMD ["sh", "-c", "{loop}"]\n'


@pytest.fixture
def device_engine() -> Iterator[Dockerd]:
    """The device's engine: a private dockerd that also listens on tcp://127.0.0.1:2375, as a
    balenaOS development image's engine does, holding a busybox base image (nothing can be
    pulled from the internet here)."""
    if not BALENA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{BALENA} is missing: scripts/setup should have installed balena-cli")
        pytest.skip("balena-cli is not installed (run scripts/setup)")
    d = new_dockerd(extra_args=("--host=tcp://127.0.0.1:2375",))
    d.start()
    try:
        images.build("ef-busybox:latest", dockerfile=images.busybox_dockerfile(), sock=d.sock)
        yield d
    finally:
        d.cleanup()
        subprocess.run(["ip", "link", "del", f"sup{d.index}"], capture_output=True, check=False)


def balena(*args: str, home: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BALENA), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HOME": str(home)})


def wait_applied(*, want: set[str], limit_s: float = 90,
                 changed: dict[str, str] | None = None) -> dict[str, Any]:
    """Poll /v2/state/status (as balena CLI does) until `want` run and the app is applied."""
    deadline = time.monotonic() + limit_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = httpx.get(f"{API}/v2/state/status", timeout=10).json()
        ids = {c["serviceName"]: c["containerId"] for c in status["containers"]
               if c["status"] == "Running"}
        if status["appState"] == "applied" and set(ids) == want and not any(
                ids.get(s) == old for s, old in (changed or {}).items()):
            return status
        time.sleep(0.5)
    raise AssertionError(f"not applied in {limit_s}s: {status}")


def read_logs(home: Path, wanted: list[str], limit_s: float = 30) -> str:
    """Run `balena device logs 127.0.0.1` until every wanted text was printed."""
    proc = subprocess.Popen([str(BALENA), "device", "logs", "127.0.0.1", "--max-retry", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HOME": str(home)})
    seen: list[str] = []
    threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
                     daemon=True).start()
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline and not all(w in "".join(seen) for w in wanted):
            time.sleep(0.2)
    finally:
        proc.kill()  # it ignores SIGTERM while streaming
        proc.wait(timeout=10)
    return "".join(seen)


def test_balena_push_logs_and_a_second_push(device_engine: Dockerd, tmp_path: Path,
                                            unique: str) -> None:
    d = device_engine
    proj = tmp_path / "proj"
    for name in ("first", "second"):
        (proj / name).mkdir(parents=True)
        (proj / name / "Dockerfile").write_text(dockerfile(name, "v1"))
    (proj / "docker-compose.yml").write_text(COMPOSE)
    home = tmp_path / "home"
    home.mkdir()
    sup, _port, sup_out = start_supervisor(
        tmp_path, f"bc{unique}", {"deviceType": "generic-amd64", "localMode": True},
        "--api-port", "48484", "--api-host", "127.0.0.1", "--engine-socket", d.sock,
        "--engine-pidfile", str(d.root / "docker.pid"), "--bridge-name", f"sup{d.index}",
        "--bridge-subnet", f"10.115.{d.index}.0/25")
    try:
        out = balena("push", "127.0.0.1", "--source", str(proj), "--nolive", "--detached",
                     home=home)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Successfully tagged local_image_first:latest" in out.stdout, out.stdout
        first = wait_applied(want={"first", "second"})
        ids = {c["serviceName"]: c["containerId"] for c in first["containers"]}
        assert {i["name"] for i in first["images"]} == {"local_image_first:latest",
                                                         "local_image_second:latest"}
        target = httpx.get(f"{API}/v2/local/target-state").json()["state"]["local"]
        assert target["apps"]["1"]["name"] == "localapp"

        logs = read_logs(home, ["[first] first says v1", "[second] second says v1"])
        assert "Streaming logs" in logs
        assert "[first] first says v1" in logs and "[second] second says v1" in logs, logs

        (proj / "second" / "Dockerfile").write_text(dockerfile("second", "v2"))
        out = balena("push", "127.0.0.1", "--source", str(proj), "--nolive", "--detached",
                     home=home)
        assert out.returncode == 0, out.stdout + out.stderr
        second = wait_applied(want={"first", "second"}, changed={"second": ids["second"]})
        after = {c["serviceName"]: c["containerId"] for c in second["containers"]}
        assert after["first"] == ids["first"], "the unchanged service keeps its container"
        assert after["second"] != ids["second"], "the changed service was replaced"
        logs = read_logs(home, ["[second] second says v2"])
        assert "[second] second says v2" in logs, logs
    finally:
        sup.terminate()
        sup.wait(timeout=30)
        assert "Traceback" not in "".join(sup_out), "".join(sup_out)
