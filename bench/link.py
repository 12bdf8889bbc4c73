"""Cost of the cloud link (issue 5): the same two-service release run by a managed supervisor
(registered with a fleet server, polling every 10 s, reporting, streaming logs) and by an
unmanaged one (the same release from apps.json), both converged and then idle; CPU time and
RSS of each supervisor process over the same window, and the link's traffic.

Run: .venv/bin/python bench/link.py [--idle 60]   (needs scripts/setup: dockerd + registry)
Writes the "## link" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx
from bench.verdicts import write_section
from tests.device.conftest import cleanup_scope
from tests.support import images
from tests.support.fleet import free_port

CLI = [sys.executable, "-m", "edgefleet"]
COMPOSE = """services:
  talker:
    build: ./talker
  sleeper:
    build: ./sleeper
"""
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD {cmd}
"""


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used so far, RSS in kB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text()
                   .splitlines() if line.startswith("VmRSS")))
    return cpu, rss


def wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def project(root: Path) -> Path:
    cmds = {"talker": ["sh", "-c", "while true; do echo talking; sleep 1; done"],
            "sleeper": ["sh", "-c", "while true; do sleep 1; done"]}
    for name, cmd in cmds.items():
        (root / name).mkdir(parents=True)
        (root / name / "Dockerfile").write_text(DOCKERFILE.format(cmd=json.dumps(cmd)))
        shutil.copy2(images.BUSYBOX, root / name / "busybox")
    (root / "docker-compose.yml").write_text(COMPOSE)
    return root


def measure(pid: int, idle_s: float) -> tuple[float, int]:
    cpu0, _ = proc_stats(pid)
    time.sleep(idle_s)
    cpu1, rss = proc_stats(pid)
    return cpu1 - cpu0, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eflink"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token_file = work / "admin.token"
    server = subprocess.Popen([*CLI, "server", "run", "--data-dir", str(work / "server"),
                               "--port", str(port), "--registry", images.REGISTRY,
                               "--admin-token-file", str(token_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        wait("server", lambda: httpx.get(f"{url}/ping", timeout=2).text == "OK", 60)
        env = {**os.environ, "EDGEFLEET_SERVER": url,
               "EDGEFLEET_TOKEN": token_file.read_text().strip(),
               "EDGEFLEET_CLIENT_CONFIG": str(work / "cli.json")}
        subprocess.run([*CLI, "fleet", "create", "bench"], env=env, check=True,
                       capture_output=True)
        subprocess.run([*CLI, "push", "bench", str(project(work / "project")), "--json"],
                       env=env, check=True, capture_output=True)
        subprocess.run([*CLI, "device", "config", "bench", "-o", str(work / "managed.json"),
                        "--poll-interval", "10000"], env=env, check=True, capture_output=True)
        cfg = json.loads((work / "managed.json").read_text())
        (work / "managed.json").write_text(json.dumps({**cfg, "listenPort": free_port()}))
        managed = subprocess.Popen([*CLI, "supervisor", "run", "--config",
                                    str(work / "managed.json"), "--data-dir",
                                    str(work / "m"), "--scope", "benchlinkm"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(managed)
        headers = {"Authorization": f"Bearer {env['EDGEFLEET_TOKEN']}"}

        def converged() -> dict[str, Any] | None:
            uuid = json.loads((work / "managed.json").read_text()).get("uuid")
            if not uuid:
                return None
            dev = httpx.get(f"{url}/api/v1/devices/{uuid}", headers=headers).json()
            return dev if dev.get("update_status") == "done" else None

        device = wait("the managed device to converge", converged, 180)
        # the same release, unmanaged, from apps.json
        target = httpx.get(f"{url}/device/v3/{device['uuid']}/state", headers={
            "Authorization": f"Bearer {json.loads((work / 'managed.json').read_text())['deviceApiKey']}"}).json()
        apps = target[device["uuid"]]["apps"]
        (work / "apps.json").write_text(json.dumps({"apps": apps}))
        (work / "unmanaged.json").write_text(json.dumps({"listenPort": free_port()}))
        unmanaged = subprocess.Popen([*CLI, "supervisor", "run", "--config",
                                      str(work / "unmanaged.json"), "--apps",
                                      str(work / "apps.json"), "--data-dir", str(work / "u"),
                                      "--scope", "benchlinku"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(unmanaged)
        time.sleep(20)  # converge, then both idle
        m0, u0 = proc_stats(managed.pid)[0], proc_stats(unmanaged.pid)[0]
        time.sleep(args.idle)
        (m1, m_rss), (u1, u_rss) = proc_stats(managed.pid), proc_stats(unmanaged.pid)
        m_cpu, u_cpu = m1 - m0, u1 - u0
        logs = httpx.get(f"{url}/device/v2/{device['uuid']}/logs", headers=headers,
                         params={"count": 1000}).json()
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)
        cleanup_scope("benchlinkm")
        cleanup_scope("benchlinku")
        shutil.rmtree(work, ignore_errors=True)
    per_min = 60 / args.idle
    talker = sum(1 for line in logs if line["message"] == "talking")
    section = f"""## link

Command: `.venv/bin/python bench/link.py --idle {args.idle:g}` (this 2-core VM; a two-service
release, one service printing a line a second; both supervisors converged, then idle for
{args.idle:g} s side by side).

| what | managed (fleet server, 10 s polls) | unmanaged (apps.json) | ratio |
| --- | --- | --- | --- |
| supervisor CPU per minute idle | {m_cpu * per_min * 1000:.0f} ms | {u_cpu * per_min * 1000:.0f} ms | {m_cpu / u_cpu if u_cpu else float('nan'):.2f}× |
| supervisor RSS | {m_rss / 1024:.1f} MB | {u_rss / 1024:.1f} MB | {m_rss / u_rss:.2f}× |

Measured in this run: {talker} of the talker's lines were on the server when the run ended
(retention 1000 lines). By configuration (not counted by this script), the link's idle work per
minute is 6 conditional state GETs, at most one metrics report (every 5 min) and the service's
log lines over a long-lived upload. No targets are set for the link, so this section has no
verdicts.
"""
    write_section("link", section)
    print(section)


if __name__ == "__main__":
    main()
