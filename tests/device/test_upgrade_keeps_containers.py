"""Upgrading edgefleet with the same target recreates no container (issue 12).

The previous edgefleet (hash version 1, from git history) runs a supervisor until its apps run;
then this edgefleet's supervisor runs on the same data dir and scope, and every container must
still be the one the old supervisor made.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgefleet.model import naming
from tests.device.conftest import cleanup_scope
from tests.support import images
from tests.support.oldcode import old_source

pytestmark = pytest.mark.engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def apps_json(image: str, port: int, unique: str) -> dict[str, Any]:
    loop = ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
    web = {"command": loop, "ports": [f"127.0.0.1:{port}:8080", "127.0.0.1::9090/udp"],
           "volumes": ["data:/data", {"type": "tmpfs", "target": "/scratch"}],
           "networks": {"back": {"aliases": ["db-front"]}},
           "environment": {"A": "1", "B": "two"}, "labels": {"com.example.x": "y"},
           "cap_add": ["NET_ADMIN", "SYS_TIME"], "dns": ["1.1.1.1", "9.9.9.9"],
           "extra_hosts": ["h1:10.0.0.1"], "restart": "unless-stopped",
           "healthcheck": {"test": ["CMD", "true"], "interval": "30s"},
           "mem_limit": "64m", "stop_grace_period": "5s"}
    worker = {"command": loop, "depends_on": ["web"], "ports": ["127.0.0.1::7070"],
              "security_opt": ["no-new-privileges"], "tty": True}
    return {"apps": {
        f"up{unique}": {"id": 901, "name": "upgrade", "releases": {"r1": {
            "id": 1, "services": {
                "web": {"id": 1, "image_id": 11, "image": image, "composition": web,
                        "environment": {"C": "3"}},
                "worker": {"id": 2, "image_id": 12, "image": image, "composition": worker}},
            "volumes": {"data": {}}, "networks": {"back": {}}}}},
    }}


def containers(scope: str) -> dict[str, dict[str, Any]]:
    with images.engine_client() as c:
        flt = json.dumps({"label": [f"{naming.SCOPE}={scope}"]})
        found = c.get("/containers/json", params={"all": "1", "filters": flt}).json()
    return {f"{x['Labels'][naming.APP_ID]}/{x['Labels'][naming.SERVICE_NAME]}": x
            for x in found}


def run_until_applied(cmd: list[str], env: dict[str, str], scope: str, want: int,
                      marker: str) -> tuple[dict[str, str], str]:
    """Run a supervisor until it logs `marker` with `want` containers running, then 5 s more
    (an upgrade that recreates starts at once); returns their ids and the log."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    out = proc.stdout
    assert out is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        seen: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            time.sleep(0.5)
            seen = containers(scope)
            if any(marker in line for line in lines) and len(seen) == want \
                    and all(c["State"] == "running" for c in seen.values()):
                break
        else:
            raise AssertionError(f"not applied: {''.join(lines)[-3000:]}")
        time.sleep(5)
        return {k: c["Id"] for k, c in containers(scope).items()}, "".join(lines)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=5)
        print("".join(lines)[-3000:])


def test_upgrade_from_the_previous_edgefleet_recreates_nothing(
    tmp_path: Path, unique: str, test_images: dict[str, Any]
) -> None:
    old_src = old_source(tmp_path / "old")
    scope = f"upg{unique}"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"deviceType": "generic-amd64"}))
    apps = tmp_path / "apps.json"
    apps.write_text(json.dumps(apps_json(test_images["sleeper"].ref, free_port(), unique)))
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "edgefleet", "supervisor", "run", "--config", str(config),
           "--apps", str(apps), "--data-dir", str(data), "--scope", scope, "--api-port", "0"]
    new_src = str(Path(__file__).resolve().parents[2] / "src")
    try:
        before, _ = run_until_applied(cmd, {**os.environ, "PYTHONPATH": str(old_src)}, scope,
                                      want=2, marker="Device state applied")
        after, log = run_until_applied(cmd, {**os.environ, "PYTHONPATH": new_src}, scope,
                                       want=2, marker="Supervisor API listening")
        assert "Killing service" not in log and "Installing service" not in log, log
        assert after == before, "the upgraded supervisor recreated containers"
        labels = {k: c["Labels"][naming.CONFIG_HASH] for k, c in containers(scope).items()}
        assert not any(v.startswith("2:") for v in labels.values()), labels
    finally:
        cleanup_scope(scope)
