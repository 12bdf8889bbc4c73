"""`edgefleet up` as a user runs it (on a private engine here): server, registry, a device
provisioned into a fleet, the example pushed and running, Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.e2e.devices import CLI, wait_for
from tests.support import images
from tests.support.dockerd import Dockerd
from tests.support.fleet import free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multicontainer"


def start_up(args: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([*CLI, "up", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
    wait_for("edgefleet up to be running", lambda: any(
        "[up] running" in line for line in lines) or proc.poll() is not None, timeout=240)
    assert proc.poll() is None, "".join(lines)
    return proc, lines


def stop_up(proc: subprocess.Popen[str], lines: list[str]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    wait_for("the last output", lambda: "[up] stopped" in "".join(lines), timeout=10)


def test_up_runs_the_example_on_a_provisioned_device(private_dockerd: Dockerd,
                                                     tmp_path: Path) -> None:
    port = free_port()
    args = ["--data-dir", str(tmp_path / "up"), "--port", str(port), "--registry-port",
            str(free_port()), "--api-port", str(free_port()), "--engine-socket",
            private_dockerd.sock, "--example", str(EXAMPLE)]
    proc, lines = start_up(args)
    try:
        out = "".join(lines)
        assert "registered" in out and "runs release" in out and "pushing" in out
        assert httpx.get("http://127.0.0.1:8080/", timeout=10).text.strip() == \
            "This is the frontend root"
        assert httpx.get("http://127.0.0.1:1234/cgi-bin/data", timeout=10).status_code == 200
        token = (tmp_path / "up" / "admin.token").read_text().strip()
        env = {**os.environ, "EDGEFLEET_SERVER": f"http://127.0.0.1:{port}",
               "EDGEFLEET_TOKEN": token, "EDGEFLEET_CLIENT_CONFIG": str(tmp_path / "c.json"),
               "COLUMNS": "200"}
        devices = subprocess.run([*CLI, "device", "list", "--json"], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert '"running_release"' in devices.stdout and '"fleet": "example"' in devices.stdout
        stop_up(proc, lines)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5)
        # again: the same server, fleet and device; nothing pushed twice
        proc, lines = start_up(args)
        again = "".join(lines)
        assert "pushing" not in again and "created fleet" not in again, again
        assert "runs release" in again
        stop_up(proc, lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        with images.engine_client(private_dockerd.sock) as c:  # a clean engine stops faster
            for ctr in c.get("/containers/json", params={"all": "1"}).json():
                c.delete(f"/containers/{ctr['Id']}", params={"force": "1"})
