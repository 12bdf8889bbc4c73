"""check_diskspace on a real, small loop-mounted ext4 used as the engine data root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.diagnose.checks import check_diskspace
from edgefleet.diagnose.host import Host


@pytest.fixture
def loop_root(tmp_path: Path) -> Iterator[Path]:
    """A 32 MB ext4 mounted at <tmp>/root/var/lib/docker; skipped where mounting is not allowed."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("needs root and mkfs.ext4 to loop-mount a filesystem")
    image = tmp_path / "disk.img"
    with image.open("wb") as fh:
        fh.truncate(32 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, timeout=30)
    mnt = tmp_path / "root" / "var" / "lib" / "docker"
    mnt.mkdir(parents=True)
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot loop-mount here: {done.stderr.strip()}")
    try:
        yield tmp_path / "root"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], timeout=30, check=False)


def test_filling_the_data_root_fails_naming_the_free_percentage(loop_root: Path) -> None:
    host = Host(root=loop_root, run_commands=False)
    assert check_diskspace(host).success
    data_root = loop_root / "var" / "lib" / "docker"
    st = os.statvfs(data_root)
    fill = st.f_bavail * st.f_frsize - 1 * 2**20  # leave about 1 MB of ~30 MB free
    with (data_root / "filler").open("wb") as fh:
        fh.write(b"\0" * fill)
        fh.flush()
        os.fsync(fh.fileno())
    result = check_diskspace(host)
    assert not result.success
    match = re.search(r"(\d+\.\d)% free", result.status)
    assert match and float(match.group(1)) < 10.0
