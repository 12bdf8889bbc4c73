"""Small loop-mounted ext4 filesystems, for tests that fill a disk for real."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def loop_mount(*, image: Path, mountpoint: Path, size_mb: int) -> Iterator[Path]:
    """Make a `size_mb` ext4 in `image`, loop-mount it at `mountpoint`, unmount afterwards.
    Skipped where mounting is not allowed (no root, no mkfs.ext4, no loop devices); in CI that
    is a failure, since the full-disk tests would otherwise never run."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        _skip("needs root and mkfs.ext4 to loop-mount a filesystem")
    with image.open("wb") as fh:
        fh.truncate(size_mb * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, timeout=30)
    mountpoint.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        _skip(f"cannot loop-mount here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], timeout=30, check=False)


def _skip(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)
