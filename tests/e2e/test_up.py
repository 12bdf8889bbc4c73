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
from tests.support.dockerd import Dockerd
from tests.support.fleet import free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multicontainer"


def test_up_runs_the_example_on_a_provisioned_device(private_dockerd: Dockerd,
                                                     tmp_path: Path) -> None:
    port, registry_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*CLI, "up", "--data-dir", str(tmp_path / "up"), "--port", str(port),
         "--registry-port", str(registry_port), "--api-port", str(free_port()),
         "--engine-socket", private_dockerd.sock,
         "--example", str(EXAMPLE)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        wait_for("edgefleet up to be running", lambda: any(
            "[up] running" in line for line in lines) or proc.poll() is not None, timeout=240)
        out = "".join(lines)
        assert proc.poll() is None, out
        assert "registered" in out and "runs release" in out
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
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        reader.join(timeout=10)
        assert "[up] stopped" in "".join(lines)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
