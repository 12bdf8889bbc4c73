"""The client commands against a real server over HTTP (Typer's runner in-process), and
`edgefleet server run` as a real process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from edgefleet.cli import app
from edgefleet.model.config import load_config
from edgefleet.server.registry import free_port
from tests.server.conftest import DeviceInfo, FleetInfo, Tenant, register
from tests.support import images
from tests.support.fleet_server import PG_URL, RunningServer, pg_schema_url


@pytest.fixture
def cli(server: RunningServer, tenant: Tenant, tmp_path: Path) -> Any:
    runner = CliRunner()
    env = {"EDGEFLEET_CLIENT_CONFIG": str(tmp_path / "client.json"), "COLUMNS": "200"}
    result = runner.invoke(app, ["login", "--url", server.url, "--token", tenant.token], env=env)
    assert result.exit_code == 0, result.output
    assert tenant.username in result.output
    assert (tmp_path / "client.json").stat().st_mode & 0o777 == 0o600

    def run(*args: str, code: int = 0) -> str:
        r = runner.invoke(app, list(args), env=env)
        assert r.exit_code == code, f"{args}: {r.output}"
        return r.output

    return run


def test_fleet_device_env_commands(cli: Any, server: RunningServer, tenant: Tenant,
                                   tmp_path: Path) -> None:
    assert "device_type" in cli("fleet", "create", "cli-fleet", "--type", "raspberrypi4-64",
                                "--json")
    listed = json.loads(cli("fleet", "list", "--json"))
    assert [f["name"] for f in listed] == ["cli-fleet"]
    assert "cli-fleet" in cli("fleet", "list")
    out = cli("fleet", "create", "x", "--type", "toaster", code=1)
    assert "unknown device type" in out
    cfg_path = tmp_path / "config.json"
    cli("device", "config", "cli-fleet", "-o", str(cfg_path), "--poll-interval", "60000")
    cfg = load_config(path=cfg_path)
    assert cfg.api_endpoint == server.url and cfg.device_type == "raspberrypi4-64"
    assert cfg.provisioning_api_key and cfg.application_id == listed[0]["id"]
    assert cfg.app_update_poll_interval == 60000
    # the key in config.json registers a device into this fleet
    fleet = FleetInfo(tenant=tenant, name="cli-fleet", id=listed[0]["id"],
                      uuid=listed[0]["uuid"], provisioning_key=cfg.provisioning_api_key)
    r = httpx.post(f"{server.url}/device/register", json={
        "application": fleet.id, "device_type": "raspberrypi4-64", "uuid": "ab" * 16},
        headers={"Authorization": f"Bearer {cfg.provisioning_api_key}"})
    assert r.status_code == 201
    table = cli("device", "list", "--fleet", "cli-fleet")
    assert "abababab" in table and "Offline" in table and "STATUS" in table
    cli("device", "rename", "abababab", "kitchen")
    assert json.loads(cli("device", "show", "kitchen", "--json"))["name"] == "kitchen"
    assert "at their next poll" in cli("env", "set", "GREETING", "hello", "--fleet",
                                       "cli-fleet")
    cli("env", "set", "BALENA_SUPERVISOR_POLL_INTERVAL", "30000", "--fleet", "cli-fleet",
        "--config")
    # when devices see a change: the poll interval the fleet's config variable sets
    assert "devices poll every 30 s" in cli("env", "set", "GREETING", "hi", "--device",
                                            "kitchen", "--service", "web")
    fleet_vars = json.loads(cli("env", "list", "--fleet", "cli-fleet", "--json"))
    assert {(v["level"], v["name"]) for v in fleet_vars} == {
        ("fleet", "GREETING"), ("fleet", "BALENA_SUPERVISOR_POLL_INTERVAL")}
    dev_vars = json.loads(cli("env", "list", "--device", "kitchen", "--json"))
    assert [(v["level"], v["service"], v["value"]) for v in dev_vars] == [
        ("device+service", "web", "hi")]
    assert "needs" not in cli("env", "list", "--device", "kitchen")
    cli("env", "rm", "GREETING", "--device", "kitchen", "--service", "web")
    assert json.loads(cli("env", "list", "--device", "kitchen", "--json")) == []
    assert "not set" in cli("env", "rm", "GREETING", "--device", "kitchen", code=1)
    assert "name a fleet or a device" in cli("env", "list", code=1)
    cli("device", "rm", "kitchen", "--yes")
    assert json.loads(cli("device", "list", "--json")) == []


def test_push_release_pin_and_logs(cli: Any, server: RunningServer, fleet: FleetInfo,
                                   device: DeviceInfo, tmp_path: Path, registry: str) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\nCOPY id /id\n")
    shutil.copy(images.BUSYBOX, proj / "busybox")
    (proj / "id").write_text(os.urandom(16).hex())  # a layer the registry has not seen
    out = cli("push", fleet.name, str(proj))
    assert "built and pushed" in out and "devices pick this up at their next poll" in out
    # build output per step, as text (no raw markup); push progress per layer, in bytes
    assert "[dim]" not in out and "[/]" not in out and "1/1 bytes" not in out, out
    assert re.search(r"main +Step 1/\d : FROM scratch", out), out
    assert re.search(r"main: layer [0-9a-f]{12} pushed \(\d[\d.]* (bytes|kB|MB)\)", out), out
    commit = re.search(r"release ([0-9a-f]{32})", out)
    assert commit, out
    first = commit.group(1)
    events = [json.loads(x) for x in cli("push", fleet.name, str(proj), "--json").splitlines()]
    second = events[-1]["commit"]
    assert any(e["type"] == "push" and e.get("status") == "Layer already exists"
               for e in events), events
    assert events[-1]["status"] == "success"
    releases = json.loads(cli("release", "list", fleet.name, "--json"))
    assert [r["commit"] for r in releases] == [second, first]
    assert "main" in cli("release", "show", first[:8])
    cli("device", "pin", device.uuid[:8], first[:8])
    # the device's downloads, per service (image), as it reports them
    assert device.http.patch("/device/v3/state", json={device.uuid: {"apps": {fleet.uuid: {
        "releases": {first: {"update_status": "downloading", "services": {"main": {
            "image": "x", "status": "Downloading", "download_progress": 45}}}}}}}}
        ).status_code == 200
    assert "main: Downloading 45%" in cli("device", "show", device.uuid[:8])
    shown = json.loads(cli("device", "show", device.uuid, "--json"))
    assert shown["pinned_release"] == first and shown["target_release"] == first
    cli("fleet", "pin", fleet.name, first)
    assert json.loads(cli("fleet", "show", fleet.name, "--json"))["target_release"] == first
    # failed build: exit code 1
    (proj / "Dockerfile").write_text("FROM scratch\nCOPY nothing-here /x\n")
    assert "build failed" in cli("push", fleet.name, str(proj), code=1)
    # logs
    device.http.post(f"/device/v2/{device.uuid}/log-stream",
                     content=b'{"message":"hello from main","isSystem":false}\n'
                             b'{"message":"supervisor says","isSystem":true}\n')
    out = cli("logs", device.uuid)
    assert "hello from main" in out and "[supervisor] supervisor says" in out
    lines = [json.loads(x) for x in cli("logs", device.uuid, "--json", "-n", "1").splitlines()]
    assert [x["message"] for x in lines] == ["supervisor says"]
    with images.engine_client() as engine:
        for r in json.loads(cli("release", "list", fleet.name, "--json")):
            for img in r["images"]:
                engine.delete(f"/images/{img['ref'].split('@')[0]}:{r['commit']}",
                              params={"force": "1"})


def test_not_logged_in(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["fleet", "list"],
                           env={"EDGEFLEET_CLIENT_CONFIG": str(tmp_path / "none.json")})
    assert r.exit_code == 1 and "not logged in" in r.output


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "edgefleet", "server", "run", *args],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/ping", timeout=1).text == "OK":
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=20)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_server_run_first_admin_and_registry(backend: str, tmp_path: Path) -> None:
    """First start makes the admin and prints its token once; the server starts its own
    docker-registry (SQLite) or uses the one given (PostgreSQL)."""
    if backend == "postgres" and not PG_URL:
        pytest.skip("EDGEFLEET_TEST_PG_URL is not set")
    if backend == "sqlite" and not shutil.which("docker-registry"):
        pytest.skip("docker-registry is not installed")
    with pg_schema_url(PG_URL) if backend == "postgres" else _null() as url:
        port = free_port()
        args = ["--data-dir", str(tmp_path / "data"), "--port", str(port),
                "--admin-token-file", str(tmp_path / "admin.token")]
        if url:
            args += ["--database-url", url, "--registry", images.REGISTRY]
        base = f"http://127.0.0.1:{port}"
        proc = _start(args, tmp_path / "log1")
        try:
            _wait_up(base, proc, tmp_path / "log1")
            out = (tmp_path / "log1").read_text()
            # with a token file the token goes there only, never to the output (a log)
            token = re.search(r"([0-9a-f]{32})", (tmp_path / "admin.token").read_text())
            assert token and token.group(1) not in out, out
            assert f"its API token is in {tmp_path / 'admin.token'}" in out
            me = httpx.get(f"{base}/api/v1/whoami",
                           headers={"Authorization": f"Bearer {token.group(1)}"}).json()
            assert me == {"id": me["id"], "username": "admin", "is_admin": True,
                          "is_support": False, "organization": "admin"}
            reg = re.search(r"registry: docker-registry on (127\.0\.0\.1:\d+)", out)
            if backend == "sqlite":
                assert reg, out
                assert httpx.get(f"http://{reg.group(1)}/v2/").status_code == 200
                assert (tmp_path / "data" / "server.sqlite").exists()
        finally:
            _stop(proc)
        if backend == "sqlite":
            with pytest.raises(httpx.HTTPError):  # the registry went with the server
                httpx.get(f"http://{reg.group(1)}/v2/", timeout=2)
        proc = _start(args, tmp_path / "log2")
        try:
            _wait_up(base, proc, tmp_path / "log2")
            assert "API token" not in (tmp_path / "log2").read_text()
            assert httpx.get(f"{base}/api/v1/whoami", headers={
                "Authorization": f"Bearer {token.group(1)}"}).status_code == 200
        finally:
            _stop(proc)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_server_run_refuses_a_dead_registry(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edgefleet", "server", "run", "--data-dir",
                        str(tmp_path), "--port", str(free_port()), "--registry",
                        f"127.0.0.1:{free_port()}"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "does not answer" in r.stderr


__all__ = ["register"]
