"""Every error a user can cause ends in one line saying what to do, with no traceback and a
non-zero exit code: `edgefleet` run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import Tenant
from tests.support.fleet import free_port
from tests.support.fleet_server import RunningServer

CLI = [sys.executable, "-m", "edgefleet"]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def edgefleet(*args: str, env: dict[str, str] | None = None, code: int = 1,
              prefix: list[str] | None = None) -> str:
    """Run it; check the exit code and that the output is one `error:` line; return it."""
    r = subprocess.run([*(prefix or []), *CLI, *args], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "COLUMNS": "80", **(env or {})})
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == code, f"{args}: exit {r.returncode}: {out}"
    assert "Traceback" not in out, out
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{args}: {out}"
    return lines[0]


@pytest.fixture
def logged_in(server: RunningServer, tenant: Tenant, tmp_path: Path) -> dict[str, str]:
    return {"EDGEFLEET_SERVER": server.url, "EDGEFLEET_TOKEN": tenant.token,
            "HOME": str(tmp_path)}


@pytest.fixture
def port_in_use() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_server_not_running(tmp_path: Path) -> None:
    line = edgefleet("fleet", "list", env={
        "EDGEFLEET_SERVER": f"http://127.0.0.1:{free_port()}", "EDGEFLEET_TOKEN": "x"})
    assert "cannot reach the fleet server" in line and "edgefleet server run" in line


def test_not_logged_in(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "EDGEFLEET_SERVER": "", "EDGEFLEET_TOKEN": "",
           "EDGEFLEET_CLIENT_CONFIG": str(tmp_path / "none.json")}
    assert "not logged in: run `edgefleet login" in edgefleet("device", "list", env=env)


def test_a_token_the_server_refuses(server: RunningServer, tmp_path: Path) -> None:
    line = edgefleet("fleet", "list", env={"EDGEFLEET_SERVER": server.url,
                                           "EDGEFLEET_TOKEN": "0" * 32})
    assert "log in again with `edgefleet login`" in line


def test_unknown_fleet_and_device(logged_in: dict[str, str]) -> None:
    line = edgefleet("fleet", "show", "no-such-fleet", env=logged_in)
    assert "no fleet 'no-such-fleet'" in line and "edgefleet fleet list" in line
    for args in (("device", "show", "nosuchdevice"), ("logs", "nosuchdevice")):
        line = edgefleet(*args, env=logged_in)
        assert "no device" in line and "edgefleet device list" in line
    assert "edgefleet fleet list" in edgefleet("env", "set", "A", "1", "--fleet", "nope",
                                               env=logged_in)


def test_engine_socket_missing(tmp_path: Path) -> None:
    missing = str(tmp_path / "docker.sock")
    line = edgefleet("diagnose", "state", "--engine-socket", missing, "--data-dir",
                     str(tmp_path))
    assert "engine not reachable" in line and "--engine-socket" in line
    line = edgefleet("engine", "prune", "--engine-socket", missing, code=2)
    assert "engine not reachable" in line


def test_port_taken(tmp_path: Path, port_in_use: int) -> None:
    line = edgefleet("server", "run", "--data-dir", str(tmp_path / "s"), "--port",
                     str(port_in_use), "--no-registry", code=2)
    assert f"127.0.0.1:{port_in_use}" in line and "--port" in line
    assert not (tmp_path / "s").exists(), "nothing was set up"
    line = edgefleet("up", "--data-dir", str(tmp_path / "up"), "--port", str(port_in_use),
                     "--example", str(Path(__file__).parents[2] / "examples/multicontainer"))
    assert f"port {port_in_use} for the fleet server is taken" in line


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to run as another user")
def test_no_permission(tmp_path: Path) -> None:
    root_owned = Path(f"/tmp/edgefleet-perm-{os.getpid()}")
    root_owned.mkdir(mode=0o755)
    try:
        config = root_owned / "config.json"
        config.write_text(json.dumps({"deviceType": "generic-amd64"}))
        config.chmod(0o644)
        line = edgefleet("config", "set", "dnsServers", "1.1.1.1", "--config", str(config),
                         prefix=NOBODY)
        assert "permission denied" in line and "sudo" in line
        assert json.loads(config.read_text()) == {"deviceType": "generic-amd64"}
        line = edgefleet("supervisor", "run", "--config", str(config), "--data-dir",
                         str(root_owned / "data"), "--api-port", "0", prefix=NOBODY)
        assert "permission denied" in line and str(root_owned / "data") in line
    finally:
        shutil.rmtree(root_owned)
