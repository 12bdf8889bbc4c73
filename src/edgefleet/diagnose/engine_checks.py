"""Checks of the container engine and the services on it (seed 000 §2.1, §9.2)."""

from __future__ import annotations

import http.client
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgefleet.diagnose.checks import CheckResult
from edgefleet.diagnose.host import Host
from edgefleet.engine.starts import unclean_restarts

TIMEOUT_S = 5.0


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=TIMEOUT_S)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT_S)
        sock.connect(self._path)
        self.sock = sock


def engine_get(sock_path: str, path: str) -> Any:
    """GET an Engine API path over its unix socket; JSON, or text for /_ping."""
    conn = _UnixHTTP(sock_path)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status >= 400:
            raise OSError(f"HTTP {resp.status} from {path}")
        return body.decode() if path == "/_ping" else json.loads(body)
    finally:
        conn.close()


def check_container_engine(*, host: Host, socket_path: str, record: Path,
                           unit: str = "docker") -> CheckResult:
    """Running and answering (`ps`), and no unclean restarts (systemd NRestarts when the engine
    runs under systemd, else the supervisor's record of engine starts)."""
    problems = []
    try:
        engine_get(socket_path, "/_ping")
        engine_get(socket_path, "/containers/json")
    except OSError as exc:
        problems.append(f"container engine is not answering on {socket_path}: {exc}")
    restarts, last = 0, None
    found = host.command(["systemctl", "show", "-p", "NRestarts", "--value", unit])
    if found is not None and found[0] == 0 and found[1].strip().isdigit():
        restarts = int(found[1].strip())
    else:
        restarts, started = unclean_restarts(path=record)
        if started is not None:
            last = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if restarts:
        when = f" (most recent start time: {last})" if last else ""
        problems.append(f"container engine has {restarts} unclean restarts and may be "
                        f"crashlooping{when}")
    if problems:
        return CheckResult("check_container_engine", False,
                           "Some container engine issues detected:\n" + "\n".join(problems))
    return CheckResult("check_container_engine", True, "No container engine issues detected")


def check_service_restarts(*, socket_path: str) -> CheckResult:
    """Supervised services restarting unexpectedly or failing their healthcheck."""
    try:
        listed = engine_get(socket_path,
                            '/containers/json?all=1&filters={"label":["io.balena.supervised"]}')
    except OSError as exc:
        return CheckResult("check_service_restarts", False, f"cannot list services: {exc}")
    problems = []
    for entry in listed:
        info = engine_get(socket_path, f"/containers/{entry['Id']}/json")
        name = (info.get("Config", {}).get("Labels") or {}).get("io.balena.service-name",
                                                                  info["Name"].lstrip("/"))
        count = int(info.get("RestartCount") or 0)
        if count:
            problems.append(f"service {name} is restarting unexpectedly, count: {count}")
        health = (info.get("State", {}).get("Health") or {}).get("Status")
        if health == "unhealthy":
            problems.append(f"service {name} is failing its healthcheck")
    if problems:
        return CheckResult("check_service_restarts", False,
                           "Some service issues detected:\n" + "\n".join(problems))
    return CheckResult("check_service_restarts", True,
                       f"No service issues detected ({len(listed)} services)")
