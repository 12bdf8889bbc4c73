"""A fleet server process that can be restarted on its port, and a device for tunnel tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.devices import CLI, E2EDevice, wait_for
from tests.support.fleet import free_port

DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV GREETING=hello
CMD {cmd}
"""
COMPOSE = """version: '2.1'
services:
  web:
    build: ./web
    network_mode: host
    restart: always
"""


def write_project(root: Path, *, port: int) -> Path:
    """One service, busybox httpd on the host network at `port`, serving $GREETING."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "web").mkdir(parents=True)
    script = ('mkdir -p /www; echo "$GREETING" > /www/index.html; trap "exit 0" TERM;'
              f' httpd -f -p {port} -h /www & wait')
    (root / "web" / "Dockerfile").write_text(DOCKERFILE.format(
        cmd=json.dumps(["sh", "-c", script])))
    shutil.copy2("/bin/busybox", root / "web" / "busybox")
    (root / "docker-compose.yml").write_text(COMPOSE)
    return root


@dataclass
class Server:
    """`edgefleet server run` as a process; restart() keeps its data and port."""

    root: Path
    registry: str
    port: int = field(default_factory=free_port)
    ssh_port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    extra: tuple[str, ...] = ()
    """More `server run` options (e.g. `--database-url`, `--public-url`)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def start(self) -> None:
        token_file = self.root / "server" / "admin.token"
        self.proc = subprocess.Popen(
            [*CLI, "server", "run", "--data-dir", str(self.root / "server"), "--port",
             str(self.port), "--registry", self.registry, "--admin-token-file",
             str(token_file), "--ssh-port", str(self.ssh_port), "--host", self.host,
             *self.extra],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        wait_for("the fleet server",
                 lambda: httpx.get(f"{self.url}/ping", timeout=2).text == "OK", timeout=60)
        if token_file.exists():  # a second process on a database with an admin writes none
            self.token = token_file.read_text().strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "EDGEFLEET_SERVER": self.url, "EDGEFLEET_TOKEN": self.token,
                "EDGEFLEET_CLIENT_CONFIG": str(self.root / "cli.json"), "COLUMNS": "200"}

    def run(self, *args: str, input: bytes | None = None, stdin: Any = None,
            stdout: Any = None, timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
        """Run an `edgefleet` command as the admin (any exit code)."""
        return subprocess.run([*CLI, *args], input=input, stdin=stdin,
                              stdout=stdout if stdout is not None else subprocess.PIPE,
                              stderr=subprocess.PIPE, env=self.env(), timeout=timeout,
                              check=False)

    def cli(self, *args: str) -> str:
        out = self.run(*args)
        assert out.returncode == 0, f"edgefleet {' '.join(args)}:\n{out.stdout!r}\n{out.stderr!r}"
        return out.stdout.decode()

    def device(self, uuid: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/v1/devices/{uuid}", timeout=30,
                      headers={"Authorization": f"Bearer {self.token}"})
        r.raise_for_status()
        return dict(r.json())

    def push(self, fleet: str, project: Path) -> str:
        events = [json.loads(line) for line in
                  self.cli("push", fleet, str(project), "--json").splitlines()
                  if line.strip().startswith("{")]
        done = [e for e in events if e.get("type") == "done"]
        assert done and done[-1]["status"] == "success", events[-5:]
        return str(done[-1]["commit"])


def provision(server: Server, dev: E2EDevice, *, fleet: str, poll_ms: int) -> None:
    out = dev.root / "provisioning.json"
    dev.root.mkdir(parents=True, exist_ok=True)
    server.cli("device", "config", fleet, "-o", str(out), "--poll-interval", str(poll_ms))
    dev.provision(json.loads(out.read_text()))
