"""Seed 000's fault scenario for real: check_supervisor passes against a running
`edgefleet supervisor run` and fails once that supervisor is SIGKILLed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from edgefleet.diagnose import netchecks
from tests.device.api.test_runtime import start_supervisor

pytestmark = pytest.mark.engine


def test_check_supervisor_fails_after_the_supervisor_is_killed(
        engine_sock: str, tmp_path: Path, unique: str) -> None:
    proc, port, lines = start_supervisor(tmp_path, f"ks{unique}", {}, "--api-host", "127.0.0.1")
    try:
        alive = netchecks.check_supervisor(port=port)
        assert alive.success, (alive.status, "".join(lines))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        dead = netchecks.check_supervisor(port=port)
        assert not dead.success
        assert "not running" in dead.status, dead.status
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
