"""The real balena CLI (npm balena-cli, installed by scripts/setup) against a real
`edgefleet server run`: the server process (recording the balena-API requests) and the CLI for
one user, with its own HOME."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.devices import CLI, wait_for
from tests.support.fleet import free_port

ROOT = Path(__file__).resolve().parents[2]
BALENA = ROOT / ".ci/work/balena-cli/node_modules/.bin/balena"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Server:
    url: str
    admin: str
    proc: subprocess.Popen[bytes]
    log: Path
    record: Path
    ssh_port: int

    def api(self, path: str, *, token: str) -> Any:
        """GET from edgefleet's own user API."""
        r = httpx.get(f"{self.url}/api/v1{path}", timeout=30,
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.json()

    def user(self, name: str) -> str:
        """A new user's token (made with edgefleet's own user API)."""
        r = httpx.post(f"{self.url}/api/v1/users", json={"username": name},
                       headers={"Authorization": f"Bearer {self.admin}"}, timeout=30)
        assert r.status_code == 201, r.text
        return str(r.json()["token"])


@dataclass
class Balena:
    """The balena CLI for one user (its own HOME), pointed at the server."""

    home: Path
    env: dict[str, str]

    def __call__(self, *args: str, ok: bool | None = True, timeout: float = 240,
                 input: str | None = None) -> str:
        out = subprocess.run([str(BALENA), *args], capture_output=True, text=True,
                             timeout=timeout, env=self.env, input=input)
        text = ANSI.sub("", out.stdout + out.stderr)
        assert ok is None or (out.returncode == 0) == ok, \
            f"balena {' '.join(args)} -> {out.returncode}:\n{text}"
        return text

    def stream(self, *args: str, until: list[str], limit_s: float = 60) -> str:
        """Run a command that follows output (logs --tail) until every text appeared."""
        proc = subprocess.Popen([str(BALENA), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=self.env)
        seen: list[str] = []
        threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
                         daemon=True).start()
        deadline = time.monotonic() + limit_s
        try:
            while time.monotonic() < deadline and not all(u in "".join(seen) for u in until):
                time.sleep(0.3)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        return ANSI.sub("", "".join(seen))


def balena_for(server: Server, home: Path) -> Balena:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "BALENARC_API_URL": server.url,
           "BALENARC_BUILDER_URL": server.url, "BALENARC_BALENA_URL": "edgefleet.test",
           "BALENARC_PROXY_URL": "edgefleet.test",
           "BALENARC_NO_ANALYTICS": "1", "BALENA_CLI_DISABLE_UPDATE_CHECK": "1",
           "COLUMNS": "250"}
    return Balena(home=home, env=env)


@contextmanager
def balena_server(root: Path, registry: str) -> Iterator[Server]:
    """An `edgefleet server run` under `root` (skips when the balena CLI is not installed)."""
    if not BALENA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{BALENA} is missing: scripts/setup should have installed balena-cli")
        pytest.skip("balena-cli is not installed (run scripts/setup)")
    port, ssh_port = free_port(), free_port()
    log, record = root / "server.log", root / "requests.jsonl"
    token_file = root / "server" / "admin.token"
    proc = subprocess.Popen(
        [*CLI, "server", "run", "--data-dir", str(root / "server"), "--port", str(port),
         "--registry", registry, "--heartbeat-timeout", "15", "--offline-grace", "2",
         "--admin-token-file", str(token_file), "--ssh-port", str(ssh_port)],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        env={**os.environ, "EDGEFLEET_BALENA_RECORD": str(record)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the fleet server", lambda: httpx.get(f"{url}/ping", timeout=2).text == "OK",
                 timeout=60)
        yield Server(url=url, admin=token_file.read_text().strip(), proc=proc, log=log,
                     record=record, ssh_port=ssh_port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def with_ssh(server: Server, cli: Balena, token: str) -> Balena:
    """The CLI with an SSH key registered for its user, and `ssh` run with an ssh config
    that maps ssh.edgefleet.test (`ssh.<BALENARC_PROXY_URL>`) to the server's SSH front door,
    as a user's DNS would."""
    key = cli.home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    r = httpx.post(f"{server.url}/api/v1/ssh-keys", json={
        "name": "laptop", "public_key": key.with_suffix(".pub").read_text()},
        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 201, r.text
    config, bin_dir = cli.home / "ssh_config", cli.home / "bin"
    config.write_text(f"Host ssh.edgefleet.test\n  HostName 127.0.0.1\n"
                      f"  IdentityFile {key}\n  IdentitiesOnly yes\n")
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ssh").write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
    (bin_dir / "ssh").chmod(0o755)
    return Balena(home=cli.home, env={**cli.env, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
