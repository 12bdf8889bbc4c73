"""`edgefleet up` as a new user runs it (on a private engine here), in a clean HOME: server,
registry, a device provisioned into a fleet, the example pushed and running; the commands it
prints (which are the README's quick start) each work as printed; SIGTERM stops everything;
running it again keeps the same server, fleet and device; --reset starts over."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.e2e.devices import CLI, wait_for
from tests.e2e.quickstart import quickstart_commands
from tests.support import images
from tests.support.dockerd import Dockerd
from tests.support.fleet import free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "multicontainer"
DEFAULT_DATA_DIR = "/var/lib/edgefleet-up"


def start_up(args: list[str], env: dict[str, str], *, until: str = "[up] running"
             ) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([*CLI, "up", *args], stdout=subprocess.PIPE, env=env,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
    try:
        wait_for(f"edgefleet up to print {until!r}", lambda: any(
            until in line for line in lines) or proc.poll() is not None, timeout=240)
    except AssertionError as exc:
        proc.kill()
        raise AssertionError(f"{exc}; what up printed:\n{''.join(lines[-60:])}") from None
    assert proc.poll() is None, "".join(lines)
    return proc, lines


def stop_up(proc: subprocess.Popen[str], lines: list[str], sig: int = signal.SIGINT) -> None:
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 0, "".join(lines)
    wait_for("the last output", lambda: "[up] stopped" in "".join(lines), timeout=10)


def processes_using(path: Path) -> list[str]:
    """Command lines of the processes that mention `path` (the up's own data dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def test_up_as_a_new_user(private_dockerd: Dockerd, tmp_path: Path) -> None:
    data = tmp_path / "up"
    port = free_port()
    args = ["--data-dir", str(data), "--port", str(port), "--registry-port", str(free_port()),
            "--api-port", str(free_port()), "--engine-socket", private_dockerd.sock,
            "--example", str(EXAMPLE)]
    home = tmp_path / "home"
    home.mkdir()
    # a clean HOME, no login, `edgefleet` not on PATH; its own runtime dir (other tests'
    # supervisors may run on this machine meanwhile)
    path = ":".join(p for p in os.environ["PATH"].split(":") if not p.endswith(".venv/bin"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EDGEFLEET_") and k not in ("XDG_CONFIG_HOME", "VIRTUAL_ENV")}
    env.update(HOME=str(home), PATH=path, COLUMNS="200",
               EDGEFLEET_RUNTIME_DIR=str(tmp_path / "run"))
    proc, lines = start_up(args, env)
    try:
        out = "".join(lines)
        assert "registered" in out and "runs release" in out and "pushing" in out
        assert "logged the edgefleet CLI in" in out
        # build per step (no raw markup), push per layer in bytes
        assert "[dim]" not in out and "1/1 bytes" not in out, out
        assert "frontend Step 1/" in out and "pushed (" in out, out
        printed = [line.strip()[2:] for line in lines if line.strip().startswith("$ ")]
        # the README's quick start is what up prints (with this test's data dir)
        readme = [c.replace(DEFAULT_DATA_DIR, str(data)) for c in quickstart_commands()]
        assert readme[0] == "./scripts/up"
        assert [c for c in readme[1:] if not c.startswith("export PATH=")] == \
            [c for c in printed if not c.startswith("export PATH=")], out
        assert printed[0].startswith("export PATH=")
        exports = ""
        for command in printed:  # each exactly as printed, in a shell of this clean HOME
            if command.startswith("export "):
                exports += command + "; "
            r = subprocess.run(["bash", "-c", exports + command], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, f"{command}: {r.stdout}\n{r.stderr}"
            assert "Traceback" not in r.stderr, f"{command}: {r.stderr}"
            if command.startswith("curl"):
                assert r.stdout.strip() == "This is the frontend root"
            if command.endswith("supervisor status"):
                assert "frontend" in r.stdout and str(data) in r.stderr, r.stdout + r.stderr
            if command.endswith("device list"):
                assert "up-device" in r.stdout and "Online" in r.stdout, r.stdout
        assert httpx.get("http://127.0.0.1:1234/cgi-bin/data", timeout=10).status_code == 200
        stop_up(proc, lines, signal.SIGTERM)  # as `kill` or a service manager stops it
        assert processes_using(data) == []
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5)
        # again: the same server, fleet and device; nothing pushed twice
        proc, lines = start_up(args, env)
        again = "".join(lines)
        assert "pushing" not in again and "created fleet" not in again, again
        assert "runs release" in again and "logged the edgefleet CLI in" not in again
        stop_up(proc, lines)
        # --reset: a new server, fleet and device (stopped as soon as the fleet exists)
        proc, lines = start_up([*args, "--reset"], env, until="created fleet")
        assert "[up] reset: removed" in "".join(lines)
        stop_up(proc, lines, signal.SIGTERM)
        assert processes_using(data) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        with images.engine_client(private_dockerd.sock) as c:  # a clean engine stops faster
            for ctr in c.get("/containers/json", params={"all": "1"}).json():
                c.delete(f"/containers/{ctr['Id']}", params={"force": "1"})
