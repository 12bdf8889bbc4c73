"""End to end: one fleet server process, one registry, two devices (each a private dockerd and a
supervisor process). Push, per-device variables, pinning, offline status and logs, all through
the real programs over real HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.devices import CLI, E2EDevice, wait_for
from tests.support.dockerd import new_dockerd
from tests.support.fleet import free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]

HEARTBEAT_TIMEOUT_S = 15
OFFLINE_GRACE_S = 2
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV GREETING=hello
CMD {cmd}
"""
COMPOSE = """version: '2.1'
services:
  main:
    build: ./main
    restart: always
  worker:
    build: ./worker
    restart: always
"""


def write_project(root: Path, *, worker_version: str) -> Path:
    """A two-service compose project built FROM scratch with the host's static busybox. The
    services exit on SIGTERM (a shell as pid 1 ignores it without a trap): each update's stop
    then takes a second, not the 10 s grace period."""
    cmds = {"main": ["sh", "-c", "trap 'exit 0' TERM;"
                                 ' while true; do echo "main says $GREETING"; sleep 1; done'],
            "worker": ["sh", "-c", f"trap 'exit 0' TERM; echo worker {worker_version} started;"
                                   " while true; do sleep 1; done"]}
    shutil.rmtree(root, ignore_errors=True)
    for service, cmd in cmds.items():
        (root / service).mkdir(parents=True)
        (root / service / "Dockerfile").write_text(DOCKERFILE.format(cmd=json.dumps(cmd)))
        shutil.copy2("/bin/busybox", root / service / "busybox")
    (root / "docker-compose.yml").write_text(COMPOSE)
    return root


@dataclass
class Fleet:
    """The fleet server process and a user client of it."""

    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/api/v1", timeout=120,
                            headers={"Authorization": f"Bearer {self.token}"})

    def device(self, uuid: str) -> dict[str, Any]:
        with self.api() as c:
            r = c.get(f"/devices/{uuid}")
            r.raise_for_status()
            return dict(r.json())

    def cli(self, *args: str) -> str:
        """Run an `edgefleet` client command as this server's admin; its stdout."""
        out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=180,
                             env={**os.environ, "EDGEFLEET_SERVER": self.url,
                                  "EDGEFLEET_TOKEN": self.token,
                                  "EDGEFLEET_CLIENT_CONFIG": str(self.log.parent / "cli.json"),
                                  "COLUMNS": "200"})
        assert out.returncode == 0, f"edgefleet {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def push(self, fleet: str, project: Path) -> str:
        """`edgefleet push`; returns the new release's commit (the build must succeed)."""
        events = [json.loads(line) for line in
                  self.cli("push", fleet, str(project), "--json").splitlines()
                  if line.strip().startswith("{")]
        done = [e for e in events if e.get("type") == "done"]
        assert done and done[-1]["status"] == "success", events[-5:]
        return str(done[-1]["commit"])


@pytest.fixture
def fleet_server(tmp_path: Path, registry: str) -> Iterator[Fleet]:
    port = free_port()
    log = tmp_path / "server.log"
    token_file = tmp_path / "server" / "admin.token"
    proc = subprocess.Popen(
        [*CLI, "server", "run", "--data-dir", str(tmp_path / "server"), "--port", str(port),
         "--registry", registry, "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT_S),
         "--offline-grace", str(OFFLINE_GRACE_S), "--admin-token-file", str(token_file)],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the fleet server", lambda: httpx.get(f"{url}/ping", timeout=2).text == "OK",
                 timeout=60)
        yield Fleet(url=url, token=token_file.read_text().strip(), proc=proc, log=log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def two_devices(tmp_path: Path) -> Iterator[list[E2EDevice]]:
    engines = [new_dockerd(), new_dockerd()]
    devices = [E2EDevice(name=f"dev{i + 1}", dockerd=d, root=tmp_path / f"dev{i + 1}")
               for i, d in enumerate(engines)]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda d: d.start(), engines))
        yield devices
    finally:
        for dev in devices:
            dev.stop()
            dev.remove_containers()  # a clean engine stops faster
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda d: d.cleanup(), engines))


def ids(dev: E2EDevice) -> dict[str, str]:
    return {svc: info["Id"] for svc, info in dev.containers().items()}


def test_two_devices_follow_their_fleet(fleet_server: Fleet, two_devices: list[E2EDevice],
                                        tmp_path: Path) -> None:
    fleet = fleet_server
    d1, d2 = two_devices
    fleet.cli("fleet", "create", "e2e", "--type", "generic-amd64")
    for dev in (d1, d2):
        out = dev.root / "provisioning.json"
        dev.root.mkdir(parents=True, exist_ok=True)
        fleet.cli("device", "config", "e2e", "-o", str(out), "--poll-interval", "10000")
        dev.provision(json.loads(out.read_text()))
    for dev in (d1, d2):
        dev.start()
    try:
        for dev in (d1, d2):
            wait_for(f"{dev.name} to register", lambda d=dev: d.uuid, timeout=60)
            assert "provisioningApiKey" not in dev.config()

        # --- release 1 reaches both devices ------------------------------------------------
        c1 = fleet.push("e2e", write_project(tmp_path / "project", worker_version="v1"))
        for dev in (d1, d2):
            wait_for(f"{dev.name} to run release 1",
                     lambda d=dev: d.running_commits() == {"main": c1, "worker": c1},
                     timeout=90)
            wait_for(f"the server to see {dev.name} done on release 1",
                     lambda d=dev: (v := fleet.device(d.uuid))["running_release"] == c1
                     and v["update_status"] == "done", timeout=30)

        # --- a device+service variable changes only that service on that device ------------
        before1, before2 = ids(d1), ids(d2)
        fleet.cli("env", "set", "GREETING", "hi", "--device", d1.uuid, "--service", "main")
        changed_ms = int(time.time() * 1000)
        wait_for("dev1's main to get GREETING=hi",
                 lambda: "GREETING=hi" in d1.containers()["main"]["Config"]["Env"]
                 and d1.containers()["main"]["State"]["Running"], timeout=60)
        after1 = ids(d1)
        assert after1["main"] != before1["main"] and after1["worker"] == before1["worker"]
        wait_for("dev2 to poll after the change",
                 lambda: (fleet.device(d2.uuid)["last_seen_ms"] or 0) > changed_ms + 1000,
                 timeout=40)
        time.sleep(2)
        assert ids(d2) == before2, "the other device did not change"
        assert "GREETING=hello" in d2.containers()["main"]["Config"]["Env"]

        # --- pin dev2 to release 1, push release 2: dev1 moves, dev2 stays -----------------
        fleet.cli("device", "pin", d2.uuid, c1)
        c2 = fleet.push("e2e", write_project(tmp_path / "project", worker_version="v2"))
        pushed_ms = int(time.time() * 1000)
        wait_for("dev1 to run release 2",
                 lambda: d1.running_commits() == {"main": c2, "worker": c2}, timeout=90)
        wait_for("dev2 to poll after release 2",
                 lambda: (fleet.device(d2.uuid)["last_seen_ms"] or 0) > pushed_ms + 1000,
                 timeout=40)
        time.sleep(2)
        assert d2.running_commits() == {"main": c1, "worker": c1}
        v2 = fleet.device(d2.uuid)
        assert v2["pinned_release"] == c1 and v2["running_release"] == c1
        wait_for("the server to see dev1 on release 2",
                 lambda: fleet.device(d1.uuid)["running_release"] == c2, timeout=30)

        # --- logs of each device's services ------------------------------------------------
        def logs(dev: E2EDevice, service: str) -> str:
            return fleet.cli("logs", dev.uuid, "--service", service, "--count", "1000")

        wait_for("dev1's logs", lambda: "[main] main says hi" in logs(d1, "main")
                 and "[worker] worker v2 started" in logs(d1, "worker"), timeout=30)
        wait_for("dev2's logs", lambda: "[main] main says hello" in logs(d2, "main")
                 and "main says hi" not in logs(d2, "main"), timeout=30)

        # --- a stopped supervisor turns its device Offline ---------------------------------
        d2.stop()
        wait_for("dev2 to be Offline", lambda: fleet.device(d2.uuid)["status"] == "Offline",
                 timeout=HEARTBEAT_TIMEOUT_S + OFFLINE_GRACE_S + 20)
        assert fleet.device(d1.uuid)["status"] == "Online"
        assert "Supervisor stopping" in fleet.cli("logs", d2.uuid, "--count", "50"), \
            "its last words reached the server"
    except BaseException:
        for dev in (d1, d2):
            print(f"--- {dev.name} supervisor log ---\n{dev.log_tail(60)}")
        print(f"--- server log ---\n{fleet.log.read_text(errors='replace')[-3000:]}")
        raise
