"""A read-only view of a host under a root prefix, so checks run on `/` or on a fixture tree."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DiskUsage:
    """Space on the filesystem holding a path."""

    total: int
    free: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free / self.total if self.total else 0.0


@dataclass(frozen=True)
class Host:
    """Files and commands of a host. `root` is `/` for real, a fixture dir in tests."""

    root: Path = Path("/")
    data_root: str = "/var/lib/docker"
    """The engine's data root (inside `root`)."""
    run_commands: bool = True
    """False for fixture trees: commands of the machine running the tests are not the host's."""

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def read(self, p: str) -> str | None:
        """A file's text, or None when it is missing or unreadable."""
        try:
            return self.path(p).read_text(errors="replace")
        except OSError:
            return None

    def glob(self, pattern: str) -> list[Path]:
        return sorted(self.root.glob(pattern.lstrip("/")))

    def disk_usage(self, p: str) -> DiskUsage | None:
        """statvfs of a path, or the fixture's `<p>/.statvfs` file ("total free" in bytes)."""
        fake = self.read(f"{p.rstrip('/')}/.statvfs")
        if fake is not None:
            total, free = (int(x) for x in fake.split())
            return DiskUsage(total=total, free=free)
        try:
            st = os.statvfs(self.path(p))
        except OSError:
            return None
        return DiskUsage(total=st.f_blocks * st.f_frsize, free=st.f_bavail * st.f_frsize)

    def command(self, args: list[str], *, timeout: float = 5.0) -> tuple[int, str] | None:
        """(exit code, output) of a host command; None when it cannot run here."""
        if not self.run_commands:
            fake = self.read(f"/.commands/{'_'.join(a.replace('/', '_') for a in args)}")
            if fake is None:
                return None
            code, _, out = fake.partition("\n")
            return int(code), out
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.returncode, done.stdout + done.stderr
