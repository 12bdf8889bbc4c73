"""Checks on the data root preload injects into, all made before anything is written: it is
one (or empty), no engine runs on it, and its filesystem has room."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from edgefleet.engine.liveness import running_engine
from edgefleet.preload.errors import PreloadError

# kept free beyond what the copy needs: the engine must still start and write its databases
SPACE_MARGIN = 8 * 2**20


def check_target_root(*, data_root: Path) -> bool:
    """True when `data_root` is an overlay2 data root, False when it is absent or empty (it
    will be created); an error for anything else."""
    if not data_root.exists():
        if not data_root.parent.is_dir():
            raise PreloadError(f"{data_root.parent} does not exist: mount the data partition "
                               "first")
        return False
    if not data_root.is_dir():
        raise PreloadError(f"{data_root} is not a directory")
    if (data_root / "image" / "overlay2" / "imagedb").is_dir():
        return True
    entries = [p.name for p in data_root.iterdir() if p.name != "lost+found"]
    if not entries:
        return False
    other = sorted(p.name for p in (data_root / "image").iterdir()) \
        if (data_root / "image").is_dir() else []
    if "overlay2" in other:
        raise PreloadError(f"{data_root}/image/overlay2 has no imagedb: the data root is "
                           "damaged")
    if other:
        raise PreloadError(f"{data_root} is an engine data root for storage driver "
                           f"{', '.join(other)}, not overlay2")
    raise PreloadError(f"{data_root} is not an engine data root (no image/overlay2) and not "
                       f"empty (holds {', '.join(sorted(entries)[:5])}): pass the engine's "
                       "--data-root, e.g. <data partition>/docker")


def check_not_running(*, data_root: Path, pidfiles: Iterable[Path] = ()) -> None:
    """Refuse when an engine is running on the data root."""
    if not data_root.exists():
        return
    why = running_engine(data_root=data_root, pidfiles=pidfiles)
    if why:
        raise PreloadError(f"an engine is running on {data_root} ({why}): stop it first "
                           "(preload writes into a stopped engine's data root only)")


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def check_space(*, data_root: Path, needed: int, inodes: int) -> None:
    """Refuse when the target filesystem has less free space (or inodes) than the copy needs."""
    st = os.statvfs(_existing(data_root))
    free = st.f_bavail * st.f_frsize
    if needed + SPACE_MARGIN > free:
        raise PreloadError(
            f"not enough space in {data_root}: the images need {_mb(needed)} (+ {_mb(SPACE_MARGIN)}"
            f" kept free), the filesystem has {_mb(free)} free; nothing was written")
    if st.f_files and inodes > st.f_favail:
        raise PreloadError(f"not enough inodes in {data_root}: the images need {inodes}, the "
                           f"filesystem has {st.f_favail}; nothing was written")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"
