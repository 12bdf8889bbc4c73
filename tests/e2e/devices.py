"""Test devices for end-to-end runs: each one a private dockerd (own data-root, exec-root,
pidfile, socket, bridge) and an `edgefleet supervisor run` process with its own config.json."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import images
from tests.support.dockerd import Dockerd, new_dockerd
from tests.support.fleet import free_port

CLI = [sys.executable, "-m", "edgefleet"]


def wait_for(what: str, check: Callable[[], Any], *, timeout: float, every: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # a check may fail while things come up
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class E2EDevice:
    """One device: its engine, its supervisor process and its config.json."""

    name: str
    dockerd: Dockerd
    root: Path
    scope: str = "e2e"
    proc: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()
    """More `supervisor run` options (e.g. `--reboot-command`)."""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "supervisor.log"

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    def provision(self, config: dict[str, Any]) -> None:
        """Write a provisioning config.json (with a listenPort of its own)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps({**config, "listenPort": free_port()},
                                               indent=2))

    def config(self) -> dict[str, Any]:
        return dict(json.loads(self.config_path.read_text()))

    @property
    def uuid(self) -> str:
        return str(self.config().get("uuid", ""))

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [*CLI, "supervisor", "run", "--config", str(self.config_path), "--data-dir",
             str(self.root / "data"), "--engine-socket", self.dockerd.sock, "--scope",
             self.scope, "--engine-pidfile", str(self.dockerd.root / "docker.pid"), *self.args],
            stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def containers(self) -> dict[str, dict[str, Any]]:
        """Supervised containers on this device's engine, by service name (inspected)."""
        out: dict[str, dict[str, Any]] = {}
        flt = json.dumps({"label": ["io.balena.supervised"]})
        with images.engine_client(self.dockerd.sock, timeout=30) as c:
            for ctr in c.get("/containers/json", params={"all": "1", "filters": flt}).json():
                info = c.get(f"/containers/{ctr['Id']}/json").json()
                out[info["Config"]["Labels"]["io.balena.service-name"]] = info
        return out

    def remove_containers(self) -> None:
        """Force-remove every container on this device's engine (test teardown)."""
        try:
            with images.engine_client(self.dockerd.sock, timeout=30) as c:
                for ctr in c.get("/containers/json", params={"all": "1"}).json():
                    c.delete(f"/containers/{ctr['Id']}", params={"force": "1"})
        except (OSError, httpx.HTTPError):
            pass

    def running_commits(self) -> dict[str, str]:
        """service → commit (from the container name) of running containers."""
        return {svc: info["Name"].rsplit("_", 1)[-1]
                for svc, info in self.containers().items() if info["State"]["Running"]}

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@contextmanager
def running_device(name: str, root: Path, *, args: tuple[str, ...] = ()) -> Iterator[E2EDevice]:
    """A device on a private dockerd of its own (started), stopped and cleaned up after."""
    engine = new_dockerd()
    dev = E2EDevice(name=name, dockerd=engine, root=root, args=args)
    try:
        engine.start()
        yield dev
    finally:
        dev.stop()
        dev.remove_containers()
        engine.cleanup()
