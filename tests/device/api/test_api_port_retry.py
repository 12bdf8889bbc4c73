"""The supervisor API's port is held by another program: the supervisor says which one, keeps
reconciling without its API, and listens once the port is released (jittered backoff)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.device.api.port_holder import port_holder
from edgefleet.device.runtime import API_RETRY_CAP_S, api_retry_delay_s
from edgefleet.model import formats
from tests.device.conftest import cleanup_scope
from tests.support import images

pytestmark = pytest.mark.engine
CLI = [sys.executable, "-m", "edgefleet"]
COMPOSE = """
services:
  main:
    command: ["sh", "-c", "exec sleep 100000"]
    stop_grace_period: 1s
"""


def _running(scope: str) -> int:
    with images.engine_client(timeout=10) as c:
        flt = json.dumps({"label": [f"io.edgefleet.scope={scope}"], "status": ["running"]})
        return len(c.get("/containers/json", params={"filters": flt}).json())


def _until(check: Any, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_retry_delays_grow_are_jittered_and_capped() -> None:
    rng = random.Random(7)
    delays = [api_retry_delay_s(attempt=n, rng=rng) for n in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(d <= API_RETRY_CAP_S for d in delays)
    assert delays[-1] >= API_RETRY_CAP_S / 2
    again = [api_retry_delay_s(attempt=n, rng=random.Random(8)) for n in range(12)]
    assert delays != again, "two supervisors do not retry in step"


def test_port_holder_names_the_listening_process() -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        assert f"pid {os.getpid()} (" in port_holder(port=held.getsockname()[1])
    finally:
        held.close()


def test_a_port_held_by_another_program_is_named_and_retried_while_apps_run(
        tmp_path: Path, unique: str, test_images: dict[str, Any]) -> None:
    scope = f"pr{unique}"
    rel = formats.release_from_compose(compose_yaml=COMPOSE,
                                       images={"main": test_images["sleeper"].ref})
    (tmp_path / "apps.json").write_text(json.dumps({"apps": {f"a{unique}": {
        "id": 77, "name": "appa", "releases": {"r1": rel.model_dump(mode="json")}}}}))
    (tmp_path / "config.json").write_text("{}")
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    proc = subprocess.Popen(
        [*CLI, "supervisor", "run", "--config", str(tmp_path / "config.json"), "--data-dir",
         str(tmp_path / "data"), "--scope", scope, "--api-port", str(port), "--api-host",
         "127.0.0.1", "--apps", str(tmp_path / "apps.json")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
                     daemon=True).start()
    try:
        assert _until(lambda: any("cannot listen" in x for x in lines), timeout=30), lines
        said = next(x for x in lines if "cannot listen" in x)
        assert f"127.0.0.1:{port}" in said and f"held by pid {os.getpid()} (" in said, said
        assert _until(lambda: _running(scope) == 1, timeout=90), (
            "the app runs while the API port is held: " + "".join(lines[-5:]))
        assert proc.poll() is None
        assert not any("API listening" in x for x in lines)
        held.close()
        assert _until(lambda: any("API listening" in x for x in lines),
                      timeout=API_RETRY_CAP_S + 15), lines
        assert httpx.get(f"http://127.0.0.1:{port}/ping").text == "OK"
        assert sum("cannot listen" in x for x in lines) == 1, "said once: the holder did not change"
    finally:
        held.close()
        proc.terminate()
        proc.wait(timeout=30)
        cleanup_scope(scope)
