"""schemathesis against the OpenAPI document the running supervisor serves: no input makes
any endpoint answer 5xx. Bounded: 10 examples per operation, deterministic generation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.device.api.test_runtime import start_supervisor
from tests.device.conftest import cleanup_scope

pytestmark = [pytest.mark.engine, pytest.mark.slow]
ST = str(Path(sys.executable).parent / "st")
# /v2/local/logs streams forever; /v2/journal-logs answers 501 by design on a host without
# journald; /v2/diagnostics/report takes no input and runs the whole report (seconds) per call.
# All three are tested in test_v2.py / test_local_mode.py.
EXCLUDED = ("/v2/local/logs", "/v2/journal-logs", "/v2/diagnostics/report")


def test_no_generated_request_gets_a_server_error(tmp_path: Path, unique: str) -> None:
    scope = f"st{unique}"
    proc, port, _lines = start_supervisor(
        tmp_path, scope, {"deviceType": "generic-amd64", "localMode": True},
        "--api-host", "127.0.0.1", "--reboot-command", "true", "--shutdown-command", "true")
    try:
        args = [ST, "run", f"http://127.0.0.1:{port}/openapi.json", "--checks",
                "not_a_server_error", "--max-examples", "10", "--generation-deterministic",
                "--request-timeout", "30", "--no-color"]
        for path in EXCLUDED:
            args += ["--exclude-path", path]
        out = subprocess.run(args, capture_output=True, text=True, timeout=240, cwd=tmp_path)
        assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
        assert " passed" in out.stdout and "Tested: 34" in out.stdout, out.stdout[-3000:]
        # the stateful phase runs over the links schemathesis infers (appId into the app
        # operations); with no app in local mode they find no ids to carry
        assert "Stateful (in" in out.stdout and "API Links:" in out.stdout, out.stdout[-3000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cleanup_scope(scope)
