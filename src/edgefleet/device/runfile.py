"""A running supervisor's runtime file: which data dir, scope, engine and API port it uses, so
`edgefleet supervisor status` / `logs` with no flags find the supervisor running here.

One JSON file per process in `/run/edgefleet` (`$EDGEFLEET_RUNTIME_DIR` overrides; a user
that cannot write there gets `$XDG_RUNTIME_DIR/edgefleet` or `/tmp/edgefleet-<uid>`), removed
when the supervisor stops; a file whose process is gone is ignored and removed."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunningSupervisor:
    """What a running supervisor wrote about itself."""

    pid: int
    data_dir: str
    scope: str
    engine_socket: str
    api_port: int
    config: str = ""

    def describe(self) -> str:
        return (f"the supervisor running here (pid {self.pid}, scope '{self.scope}', data dir"
                f" {self.data_dir}, API on port {self.api_port})")


def runtime_dir() -> Path:
    """Where runtime files live (the first writable of the places in the module doc)."""
    if env := os.environ.get("EDGEFLEET_RUNTIME_DIR"):
        return Path(env)
    system = Path("/run/edgefleet")
    if os.geteuid() == 0 or (system.is_dir() and os.access(system, os.W_OK)):
        return system
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "edgefleet"
    return Path(f"/tmp/edgefleet-{os.getuid()}")


def _path(pid: int) -> Path:
    return runtime_dir() / f"supervisor.{pid}.json"


def write_runfile(*, info: RunningSupervisor) -> Path | None:
    """Record this supervisor; None (and no error) when the runtime dir cannot be written."""
    path = _path(info.pid)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(info)) + "\n")
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def remove_runfile(*, pid: int) -> None:
    with contextlib.suppress(OSError):
        _path(pid).unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_supervisors() -> list[RunningSupervisor]:
    """The supervisors running on this machine, by their runtime files (oldest pid first)."""
    found: list[RunningSupervisor] = []
    directory = runtime_dir()
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("supervisor.*.json")):
        try:
            data = json.loads(path.read_text())
            info = RunningSupervisor(
                pid=int(data["pid"]), data_dir=str(data["data_dir"]), scope=str(data["scope"]),
                engine_socket=str(data["engine_socket"]), api_port=int(data["api_port"]),
                config=str(data.get("config", "")))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(info.pid):
            found.append(info)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return sorted(found, key=lambda i: i.pid)
