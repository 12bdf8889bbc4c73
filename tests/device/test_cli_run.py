"""`edgefleet supervisor run|status|logs` as a user runs them: apps.json first boot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgefleet.model import formats
from tests.device.conftest import cleanup_scope

pytestmark = pytest.mark.engine
CLI = [sys.executable, "-m", "edgefleet"]


def write_apps(path: Path, image: str) -> None:
    rel = formats.release_from_compose(
        compose_yaml='services:\n  hello:\n    command: ["sh", "-c", "echo hello from'
                     ' edgefleet; while true; do sleep 1; done"]\n',
        images={"hello": image})
    path.write_text(json.dumps({"apps": {"firstboot": {
        "id": 5, "name": "fb", "releases": {"r1": rel.model_dump(mode="json")}}}}))


def test_supervisor_run_loads_apps_json_once_and_reports_status(
    tmp_path: Path, unique: str, test_images: dict[str, Any]
) -> None:
    scope = f"cli{unique}"
    config = tmp_path / "config.json"
    # a bad optional field: the supervisor uses its default, says so, and runs the apps
    config.write_text(json.dumps({"deviceType": "generic-amd64", "dnsServers": "1.1.1.1#53"}))
    apps = tmp_path / "apps.json"
    write_apps(apps, test_images["sleeper"].ref)
    data = tmp_path / "data"
    # its own runtime dir: other tests' supervisors may run on this machine meanwhile
    env = {**os.environ, "EDGEFLEET_RUNTIME_DIR": str(tmp_path / "run")}
    proc = subprocess.Popen([*CLI, "supervisor", "run", "--config", str(config), "--apps",
                             str(apps), "--data-dir", str(data), "--scope", scope],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        status: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            out = subprocess.run([*CLI, "supervisor", "status", "--json", "--data-dir",
                                  str(data), "--scope", scope], capture_output=True, text=True)
            if out.returncode == 0:
                status = json.loads(out.stdout)
                if status["services"] and status["services"][0]["status"] == "running" and \
                        status["apps"] and status["apps"][0]["update_status"] == "done":
                    break
        assert status["services"][0]["service"] == "hello"
        assert status["apps"][0]["commit"] == "r1"
        assert json.loads(apps.read_text()) == {}
        assert (tmp_path / "apps.json.preloaded").exists()
        time.sleep(1)
        logs = subprocess.run([*CLI, "supervisor", "logs", "--data-dir", str(data)],
                              capture_output=True, text=True).stdout
        assert "Started service 'hello'" in logs
        assert "hello from edgefleet" in logs
        flat = " ".join(logs.split())
        assert "config.json: dnsServers: '1.1.1.1#53' is not an IP address" in flat, logs
        assert "using the default" in flat
        # no flags: status and logs find the running supervisor and say which one it is
        found = subprocess.run([*CLI, "supervisor", "status", "--json"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert found.returncode == 0, found.stderr
        assert f"scope '{scope}'" in found.stderr and str(data) in found.stderr
        assert json.loads(found.stdout)["services"][0]["service"] == "hello"
        found = subprocess.run([*CLI, "supervisor", "logs"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert "hello from edgefleet" in found.stdout and str(data) in found.stderr
        # diagnose checks, too, checks the device of the supervisor running here
        checked = subprocess.run([*CLI, "diagnose", "checks", "--json"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert str(config) in checked.stderr, checked.stderr
        names = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}
        assert not names["check_config"]["success"], "its dnsServers is bad"
        assert names["check_supervisor"]["success"], names["check_supervisor"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cleanup_scope(scope)
    gone = subprocess.run([*CLI, "supervisor", "status"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert "no supervisor is running here" in gone.stderr, gone.stderr
    assert not list((tmp_path / "run").glob("*.json")), "the runtime file goes with it"


def test_bad_apps_json_is_refused_with_the_field(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{}")
    apps = tmp_path / "apps.json"
    apps.write_text(json.dumps({"apps": {"x": {"id": 1, "releases": {}}}}))
    out = subprocess.run([*CLI, "supervisor", "run", "--config", str(config), "--apps",
                          str(apps), "--data-dir", str(tmp_path / "d"), "--scope", "never"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "apps.x.releases" in out.stdout
    assert json.loads(apps.read_text())["apps"]["x"]["id"] == 1, "the file is left as it was"


def test_bad_config_json_is_refused(tmp_path: Path) -> None:
    """A bad required field stops the supervisor before it starts, naming the field (a bad
    optional one is ignored: tests/model/test_config.py)."""
    config = tmp_path / "config.json"
    config.write_text('{"applicationId": "twelve"}')
    out = subprocess.run([*CLI, "supervisor", "run", "--config", str(config), "--data-dir",
                          str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "applicationId" in out.stdout
