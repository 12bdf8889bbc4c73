"""Which supervisor `edgefleet supervisor status/logs/locks/api-key` look at: the one named by
flags, else the one running on this machine (its runtime file), said out loud."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

DEFAULT_DATA_DIR = Path("/var/lib/edgefleet")
DEFAULT_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class Found:
    """A supervisor's data dir, engine and scope."""

    data_dir: Path
    engine_socket: str
    scope: str


def _stop(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def find_supervisor(*, data_dir: Path | None, engine_socket: str | None,
                    scope: str | None) -> Found:
    """Flags win; missing ones come from the running supervisor they match (by data dir or
    scope), or from the only one running. Says on stderr which one it found; exits 1 with
    what to do when there is none or several."""
    from edgefleet.device.runfile import running_supervisors, runtime_dir

    running = running_supervisors()
    if data_dir is not None:
        running = [r for r in running if Path(r.data_dir) == data_dir.resolve()]
    if scope is not None:
        running = [r for r in running if r.scope == scope]
    if len(running) == 1:
        r = running[0]
        typer.echo(f"[{r.describe()}]", err=True)
        return Found(data_dir=Path(r.data_dir), engine_socket=engine_socket or r.engine_socket,
                     scope=scope or r.scope)
    if len(running) > 1:
        listed = "; ".join(f"scope '{r.scope}' in {r.data_dir} (pid {r.pid})" for r in running)
        _stop(f"{len(running)} supervisors run here: {listed}. Pick one with --scope NAME or"
              " --data-dir DIR")
    target = data_dir or DEFAULT_DATA_DIR
    if not (target / "edgefleet.sqlite").exists():
        _stop(f"no supervisor is running here (none registered in {runtime_dir()}) and"
              f" {target} has no supervisor store: start one with `edgefleet supervisor run"
              " --config config.json`, or pass --data-dir of a stopped one")
    typer.echo(f"[no supervisor is running here; showing what the store in {target}"
               " recorded]", err=True)
    return Found(data_dir=target, engine_socket=engine_socket or DEFAULT_SOCKET,
                 scope=scope or "default")
