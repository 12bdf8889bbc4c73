"""A record of engine starts and how each run ended, for counting unclean engine restarts when
the engine does not run under systemd (which would give NRestarts).

dockerd removes its pidfile when it shuts down cleanly; one killed by SIGKILL (or a crash, or
the OOM killer) leaves it behind. The recorder watches the engine's pid: when that process is
gone, the pidfile tells how it ended. Records are JSON lines, appended.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class EngineRun:
    """One engine process: when it was seen starting, and how it ended (None: still running)."""

    pid: int
    started_at: float
    ended_at: float | None = None
    clean: bool | None = None
    pidfile_inode: int = 0


def read_runs(*, path: Path) -> list[EngineRun]:
    """The recorded runs (unparseable lines are skipped)."""
    runs: dict[tuple[int, float], EngineRun] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            run = EngineRun(**json.loads(line))
        except (ValueError, TypeError):
            continue
        runs[(run.pid, run.started_at)] = run
    return sorted(runs.values(), key=lambda r: r.started_at)


def unclean_restarts(*, path: Path) -> tuple[int, float | None]:
    """(runs that ended uncleanly and were followed by a new start, most recent start time)."""
    runs = read_runs(path=path)
    unclean = sum(1 for r in runs[:-1] if r.clean is False)
    return unclean, (runs[-1].started_at if runs else None)


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def _read_pid(pidfile: Path) -> tuple[int, int] | None:
    """(pid, inode) of the pidfile. A clean shutdown deletes the file, so the next engine writes
    a new inode; after SIGKILL the next engine rewrites the same inode."""
    try:
        inode = pidfile.stat().st_ino
        return int(pidfile.read_text().strip()), inode
    except (OSError, ValueError):
        return None


class EngineStartRecorder:
    """Polls the engine's pidfile and appends a record for every start and every end."""

    def __init__(self, *, pidfile: str | Path, record: str | Path,
                 interval_s: float = 0.5) -> None:
        self.pidfile = Path(pidfile)
        self.record = Path(record)
        self.interval_s = interval_s
        self._current: EngineRun | None = None

    def _append(self, run: EngineRun) -> None:
        self.record.parent.mkdir(parents=True, exist_ok=True)
        with self.record.open("a") as fh:
            fh.write(json.dumps(asdict(run)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def poll(self) -> None:
        """One observation: note an end of the current run and/or a new start."""
        now = time.time()
        current = self._current
        found = _read_pid(self.pidfile)
        if current is not None and not _pid_alive(current.pid):
            left = found is not None and found[1] == current.pidfile_inode
            self._append(EngineRun(current.pid, current.started_at, now, clean=not left,
                                   pidfile_inode=current.pidfile_inode))
            self._current = current = None
        if current is None and found is not None and _pid_alive(found[0]):
            self._current = EngineRun(found[0], now, pidfile_inode=found[1])
            self._append(self._current)

    async def run(self) -> None:
        """Poll forever (a task of the supervisor)."""
        while True:
            self.poll()
            await asyncio.sleep(self.interval_s)
