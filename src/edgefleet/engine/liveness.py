"""Tell whether an engine is running on a data root, without asking it (it may not be ours)."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

# bbolt databases a running dockerd/balenaEngine keeps open with an exclusive flock
_BOLT_DBS = ("volumes/metadata.db", "network/files/local-kv.db", "builder/fscache.db",
             "buildkit/metadata_v2.db", "buildkit/snapshots.db", "buildkit/containerdmeta.db",
             "buildkit/cache.db", "buildkit/history.db")
_ENGINE_BINARIES = ("dockerd", "balena-engine-daemon", "balenad", "balena-engine")


def _locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _engine_processes(root: Path) -> Iterable[tuple[int, str]]:
    target = os.path.realpath(root)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0].decode(errors="replace")) not in _ENGINE_BINARIES:
            continue
        args = [a.decode(errors="replace") for a in argv[1:] if a]
        root_arg = "/var/lib/docker"
        for i, arg in enumerate(args):
            if arg.startswith(("--data-root=", "--graph=", "-g=")):
                root_arg = arg.split("=", 1)[1]
            elif arg in ("--data-root", "--graph", "-g") and i + 1 < len(args):
                root_arg = args[i + 1]
        if os.path.realpath(root_arg) == target:
            yield int(entry.name), " ".join(argv[:1][0].decode(errors="replace").split())


def running_engine(*, data_root: Path, pidfiles: Iterable[Path] = ()) -> str | None:
    """Why an engine seems to be running on `data_root`, or None when none is."""
    for rel in _BOLT_DBS:
        if _locked(data_root / rel):
            return f"{data_root / rel} is locked by a running engine"
    for proc, name in _engine_processes(data_root):
        return f"{name} (pid {proc}) runs with this data root"
    for pidfile in pidfiles:
        alive = _pid_alive(pidfile)
        if alive is not None:
            return f"the engine of pidfile {pidfile} is running (pid {alive})"
    mounts = Path("/proc/self/mounts")
    prefix = os.path.realpath(data_root / "overlay2") + "/"
    if mounts.exists():
        for line in mounts.read_text().splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1].startswith(prefix):
                return f"a container's filesystem is mounted at {fields[1]}"
    return None
