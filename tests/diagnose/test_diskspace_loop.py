"""check_diskspace on a real, small loop-mounted ext4 used as the engine data root."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.diagnose.checks import check_diskspace
from edgefleet.diagnose.host import Host
from tests.support.loopfs import loop_mount


@pytest.fixture
def loop_root(tmp_path: Path) -> Iterator[Path]:
    """A 32 MB ext4 mounted at <tmp>/root/var/lib/docker."""
    with loop_mount(image=tmp_path / "disk.img", size_mb=32,
                    mountpoint=tmp_path / "root" / "var" / "lib" / "docker"):
        yield tmp_path / "root"


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
