"""`edgefleet supervisor unit` / `edgefleet server unit` print systemd units that systemd
accepts (`systemd-analyze verify`), whose ExecStart is the `run` command with the options given
(quoting and systemd's % and $ escaped) under this Python; the server's, run as systemd would
run it, serves. Options `run` would refuse are refused now (exit 2, nothing printed)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.devices import wait_for
from tests.support.fleet import free_port

CLI = [sys.executable, "-m", "edgefleet"]


def unit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def exec_start(text: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return [a.replace("%%", "%").replace("$$", "$")
            for a in shlex.split(line.removeprefix("ExecStart="))]


def verify(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_supervisor_unit_runs_what_was_asked(tmp_path: Path) -> None:
    odd = str(tmp_path / "data dir with 100% $HOME")
    out = unit("supervisor", "unit", "--config", "/mnt/boot/config.json", "--data-dir", odd)
    assert out.returncode == 0, out.stderr
    verify(tmp_path, "edgefleet-supervisor.service", out.stdout)
    assert exec_start(out.stdout) == [*CLI, "supervisor", "run", "--config",
                                      "/mnt/boot/config.json", "--data-dir", odd]
    assert "Restart=always" in out.stdout and "WantedBy=multi-user.target" in out.stdout


def test_a_unit_with_bad_options_is_refused_now() -> None:
    missing = unit("supervisor", "unit", "--data-dir", "/x")
    assert missing.returncode == 2 and missing.stdout == ""
    assert "--config" in missing.stderr and "supervisor run" in missing.stderr
    typo = unit("server", "unit", "--prot", "48481")
    assert typo.returncode == 2 and typo.stdout == "" and "--prot" in typo.stderr


def test_the_server_units_command_serves(tmp_path: Path) -> None:
    port = free_port()
    out = unit("server", "unit", "--data-dir", str(tmp_path / "srv"), "--port", str(port),
               "--no-registry")
    assert out.returncode == 0, out.stderr
    verify(tmp_path, "edgefleet-server.service", out.stdout)
    proc = subprocess.Popen(exec_start(out.stdout), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        wait_for("the server to answer /ping", lambda: proc.poll() is None and httpx.get(
            f"http://127.0.0.1:{port}/ping", timeout=1).text == "OK", timeout=30, every=0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
