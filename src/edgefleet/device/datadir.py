"""One supervisor a data dir: an exclusive `flock` on `<data dir>/supervisor.lock`, held for
the life of the process (the kernel releases it when the process ends, even on SIGKILL).

Two supervisors on one data dir share a store and an engine scope: each removes what the
other creates, which made duplicate networks with the same name and a permanent failure
loop. The second one now refuses to start and names the first."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from edgefleet.model.errors import InvalidInput, Problem

LOCK_NAME = "supervisor.lock"


class DataDirLock:
    """Held while open; `close()` (or the end of the process) releases it."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / LOCK_NAME
        self._file: IO[str] | None = open(self.path, "a+")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            owner = self._file.read().strip() or "unknown"
            self._file.close()
            self._file = None
            raise InvalidInput("data dir", [Problem(
                "--data-dir", f"{data_dir} is in use by another supervisor (pid {owner},"
                f" lock {self.path}); two supervisors on one data dir fight over the same"
                " containers. Stop the other one, or give this one its own --data-dir and"
                " --scope")]) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None
