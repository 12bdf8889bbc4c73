"""A throw-away dockerd with its own data root, socket and bridge, to pull images into without
touching this machine's engine (preload of a fleet-server release). Needs root and dockerd."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from edgefleet.engine import dockerhttp
from edgefleet.engine.errors import EngineError, EngineUnavailable, PullFailed


@dataclass(frozen=True)
class TempEngine:
    """A running temporary engine."""

    socket: str
    data_root: Path


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=False, capture_output=True)


@contextmanager
def temp_engine(*, base: Path | None = None, timeout_s: float = 60) -> Iterator[TempEngine]:
    """Start dockerd under a fresh temp dir; stop it and delete everything afterwards."""
    if shutil.which("dockerd") is None:
        raise EngineUnavailable("dockerd", "not installed: a temporary engine is needed to pull")
    root = Path(tempfile.mkdtemp(prefix="efpl", dir=str(base) if base else "/tmp"))
    bridge = f"efpl{secrets.token_hex(3)}"
    octet = 16 + secrets.randbelow(200)
    # its own bridge and address pool, no iptables: never touches the host's docker0
    _ip("link", "add", bridge, "type", "bridge")
    _ip("addr", "add", f"172.29.{octet}.1/24", "dev", bridge)
    _ip("link", "set", bridge, "up")
    sock = root / "docker.sock"
    log = open(root / "dockerd.log", "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        ["dockerd", f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}",
         f"--pidfile={root / 'docker.pid'}", f"--host=unix://{sock}", f"--bridge={bridge}",
         "--iptables=false", "--ip-masq=false", "--storage-driver=overlay2",
         f"--default-address-pool=base=172.29.{octet}.0/24,size=28"],
        stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise EngineUnavailable("dockerd", "the temporary engine exited: "
                                        + (root / "dockerd.log").read_text()[-500:])
            try:
                with _client(str(sock)) as c:
                    if c.get("/_ping").text == "OK":
                        break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise EngineUnavailable("dockerd", "the temporary engine did not start")
            time.sleep(0.2)
        yield TempEngine(socket=str(sock), data_root=root / "data")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        log.close()
        for line in Path("/proc/mounts").read_text().splitlines():
            mnt = line.split()[1]
            if mnt.startswith(str(root) + "/"):
                subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        _ip("link", "del", bridge)


_client = dockerhttp.sync_client


def has_image(*, socket: str, ref: str) -> bool:
    """Whether the engine holds `ref` (tag or digest reference)."""
    try:
        with _client(socket) as c:
            return c.get(f"/images/{ref}/json").status_code == 200
    except httpx.HTTPError as exc:
        raise EngineUnavailable(socket, f"engine not reachable: {exc}") from None


def pull(*, socket: str, ref: str, auth: dict[str, str] | None = None,
         on_line: Callable[[str], None] | None = None) -> None:
    """Pull `ref` (a `repo@sha256:...` or `repo:tag`) into the engine."""
    name, sep, digest = ref.partition("@")
    params = {"fromImage": name, "tag": digest} if sep else {
        "fromImage": ref.rsplit(":", 1)[0], "tag": ref.rsplit(":", 1)[1]}
    header = base64.urlsafe_b64encode(json.dumps(auth or {}).encode()).decode()
    try:
        with _client(socket) as c, c.stream("POST", "/images/create", params=params,
                                            headers={"X-Registry-Auth": header}) as r:
            if r.status_code >= 400:
                r.read()
                raise PullFailed(ref, r.text.strip())
            for line in r.iter_lines():
                if line.strip():
                    msg = json.loads(line)
                    if "error" in msg:
                        raise PullFailed(ref, str(msg["error"]))
                    if on_line is not None and msg.get("status"):
                        on_line(f"{ref}: {msg['status']}")
    except httpx.HTTPError as exc:
        raise EngineError(ref, f"pull failed: {exc}") from None
