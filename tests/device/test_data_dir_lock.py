"""Two supervisors on one data dir: the second refuses to start, with a message naming the
first (two of them fighting over one engine made duplicate networks and a failure loop)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.device.conftest import cleanup_scope

pytestmark = pytest.mark.engine
CLI = [sys.executable, "-m", "edgefleet"]


def test_a_second_supervisor_on_the_same_data_dir_refuses(tmp_path: Path, unique: str) -> None:
    scope = f"lk{unique}"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"deviceType": "generic-amd64"}))
    data = tmp_path / "data"
    run = [*CLI, "supervisor", "run", "--config", str(config), "--data-dir", str(data),
           "--scope", scope, "--api-port", "0"]
    first = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        lock = data / "supervisor.lock"
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            time.sleep(0.2)
        second = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        out = second.stdout.replace("\n", " ")
        assert f"is in use by another supervisor (pid {first.pid}" in out, out
        assert first.poll() is None, "the first one keeps running"
    finally:
        first.terminate()
        first.wait(timeout=30)
        cleanup_scope(scope)
    # once the first has stopped, the data dir is free again
    again = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        assert again.poll() is None, again.stdout.read() if again.stdout else ""
    finally:
        again.terminate()
        again.wait(timeout=30)
        cleanup_scope(scope)
