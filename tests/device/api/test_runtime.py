"""`edgefleet supervisor run` serves the API: a service labelled
io.balena.features.supervisor-api calls it from inside its container (busybox wget) through
the supervisor0 bridge with its own key and sees only its own app."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.device.store import Store
from edgefleet.model import formats
from tests.device.api.conftest import APP_A, APP_B
from tests.device.conftest import cleanup_scope
from tests.support import images

pytestmark = pytest.mark.engine
CLI = [sys.executable, "-m", "edgefleet"]


def exec_in(cid: str, script: str) -> tuple[int, str]:
    """Run `sh -c script` in a container; (exit code, output)."""
    with images.engine_client(timeout=60) as c:
        ex = c.post(f"/containers/{cid}/exec", json={
            "Cmd": ["sh", "-c", script], "AttachStdout": True, "AttachStderr": True,
            "Tty": True}).json()["Id"]
        out = c.post(f"/exec/{ex}/start", json={"Detach": False, "Tty": True}).text
        code = c.get(f"/exec/{ex}/json").json()["ExitCode"]
    return int(code), out


def start_supervisor(tmp: Path, scope: str, config: dict[str, Any], *extra: str
                     ) -> tuple[subprocess.Popen[str], int, list[str]]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [*CLI, "supervisor", "run", "--config", str(tmp / "config.json"), "--data-dir",
         str(tmp / "data"), "--scope", scope, "--api-port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in list(lines):
            if m := re.search(r"API listening on [0-9.]+:(\d+)", line):
                return proc, int(m.group(1)), lines
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("supervisor did not start: " + "".join(lines))


def test_a_labelled_service_calls_the_api_from_inside_with_its_scoped_key(
        tmp_path: Path, unique: str, test_images: dict[str, Any]) -> None:
    scope = f"rt{unique}"
    img = test_images["sleeper"].ref
    rel_a = formats.release_from_compose(compose_yaml=APP_A, images={"main": img, "side": img})
    rel_b = formats.release_from_compose(compose_yaml=APP_B, images={"other": img},
                                         first_service_id=10, first_image_id=10)
    (tmp_path / "apps.json").write_text(json.dumps({"apps": {
        f"a{unique}": {"id": 77, "name": "appa", "releases": {"r1": rel_a.model_dump(
            mode="json")}},
        f"b{unique}": {"id": 78, "name": "appb", "releases": {"r1": rel_b.model_dump(
            mode="json")}}}}))
    proc, port, _lines = start_supervisor(
        tmp_path, scope, {"apiEndpoint": "http://127.0.0.1:9", "deviceType": "generic-amd64"},
        "--apps", str(tmp_path / "apps.json"), "--reboot-command", "true")
    try:
        store = Store(path=tmp_path / "data" / "edgefleet.sqlite")
        key = store.api_key(app_uuid="")
        assert key, "the global key is generated at first start and kept in the store"
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/v2/state/status").status_code == 401
        deadline = time.monotonic() + 90
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = httpx.get(f"{url}/v2/state/status", params={"apikey": key}).json()
            if status["appState"] == "applied" and len(status["containers"]) == 3 and all(
                    c["status"] == "Running" for c in status["containers"]):
                break
            time.sleep(0.5)
        ids = {c["serviceName"]: c["containerId"] for c in status["containers"]}
        assert set(ids) == {"main", "side", "other"}, status
        code, env = exec_in(ids["main"], "env | grep SUPERVISOR | sort")
        assert f"BALENA_SUPERVISOR_PORT={port}" in env
        assert "BALENA_SUPERVISOR_HOST=10.114.104.1" in env, "the supervisor0 gateway"
        assert f"BALENA_SUPERVISOR_ADDRESS=http://10.114.104.1:{port}" in env
        code, out = exec_in(ids["main"], 'wget -qO- "$BALENA_SUPERVISOR_ADDRESS/v2/'
                            'applications/state?apikey=$BALENA_SUPERVISOR_API_KEY"')
        assert code == 0, out
        state = json.loads(out)
        assert list(state) == ["appa"] and set(state["appa"]["services"]) == {"main", "side"}
        code, out = exec_in(ids["main"], 'wget -qO- "$BALENA_SUPERVISOR_ADDRESS/v2/'
                            'applications/78/state?apikey=$BALENA_SUPERVISOR_API_KEY"')
        assert code != 0 and "401" in out, "another app's state is refused"
        code, out = exec_in(ids["main"], 'wget -qO- "$BALENA_SUPERVISOR_ADDRESS/v2/'
                            'applications/state"')
        assert code != 0 and "401" in out, "no key, no answer"
        code, out = exec_in(ids["other"], 'echo "[$BALENA_SUPERVISOR_API_KEY]"')
        assert "[]" in out, "unlabelled services get no key"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cleanup_scope(scope)


def test_a_taken_port_does_not_stop_the_supervisor_and_is_retried(
        tmp_path: Path, unique: str) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    first, _, _ = start_supervisor(tmp_path / "a", f"pa{unique}", {}, "--api-port", str(port),
                                   "--api-host", "127.0.0.1")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text("{}")
    second = subprocess.Popen(
        [*CLI, "supervisor", "run", "--config", str(tmp_path / "b" / "config.json"),
         "--data-dir", str(tmp_path / "b" / "data"), "--scope", f"pb{unique}", "--api-port",
         str(port), "--api-host", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(second.stdout.readline, "")),  # type: ignore[union-attr]
                     daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("cannot listen" in x for x in lines):
            time.sleep(0.2)
        assert any(f"cannot listen on 127.0.0.1:{port}" in x for x in lines), lines
        assert second.poll() is None, "the supervisor keeps running without its API"
        first.terminate()
        first.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("API listening" in x for x in lines):
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/ping").text == "OK"
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
