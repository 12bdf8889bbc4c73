"""Disk space before pulls (issue 3): a private dockerd whose data root is a small loop-mounted
ext4; filling it makes the supervisor refuse the update with "not enough space for release X:
need N MB, M MB free", keep the old release, and finish the update once space is freed."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edgefleet.device.targets import TargetSource
from tests.device.conftest import Device, make_device
from tests.support import images
from tests.support.dockerd import Dockerd, new_dockerd
from tests.support.loopfs import loop_mount

pytestmark = pytest.mark.engine
LOOP = ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
COMPOSE = """
services:
  app:
    command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
"""


@pytest.fixture
def loop_dockerd(tmp_path: Path) -> Iterator[Dockerd]:
    """A private dockerd whose --data-root is a 64 MB ext4 loop mount."""
    d = new_dockerd()
    try:
        with loop_mount(image=tmp_path / "disk.img", mountpoint=d.data_root, size_mb=64):
            try:
                d.start()
                yield d
            finally:
                d.remove_containers()  # a clean engine stops at once
                d.cleanup()  # stops dockerd, then unmounts everything under its data root
    finally:
        d.cleanup()  # (again, harmless) when the mount itself was refused


@pytest.fixture
async def disk_device(loop_dockerd: Dockerd, tmp_path: Path, unique: str
                      ) -> AsyncIterator[Device]:
    dev = make_device(data_dir=tmp_path / "sup", scope=f"d{unique}", app_uuid=f"appd{unique}",
                      gate=True, socket=loop_dockerd.sock, poll_interval_s=4)
    try:
        yield dev
    finally:
        if dev.supervisor.gate is not None:
            await dev.supervisor.gate.close()
        await dev.engine.close()
        dev.store.close()


def _fill(path: Path, *, leave_bytes: int) -> Path:
    st = os.statvfs(path)
    filler = path / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
        fh.flush()
        os.fsync(fh.fileno())
    return filler


def status_cli(dev: Device, sock: str) -> str:
    """`edgefleet supervisor status` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "edgefleet", "supervisor", "status",
                           "--data-dir", str(dev.data_dir), "--engine-socket", sock,
                           "--scope", dev.supervisor.device.scope],
                          capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "COLUMNS": "250"}).stdout


async def test_full_data_root_refuses_the_update_keeps_the_old_release_and_resumes(
    disk_device: Device, loop_dockerd: Dockerd, registry: str, unique: str
) -> None:
    dev = disk_device
    v1 = images.build_and_push(f"disk-{unique}", "v1", cmd=LOOP)
    v2 = images.build_and_push(f"disk-{unique}", "v2", cmd=LOOP, extra="COPY big /big",
                               files={"big": os.urandom(4 * 2**20)})
    dev.supervisor.set_target(target=dev.compose_target(COMPOSE, {"app": v1.ref}),
                              source=TargetSource.DIRECT)
    await dev.converge()
    old = (await dev.containers())["app"]
    filler = _fill(loop_dockerd.data_root, leave_bytes=6 * 2**20)

    dev.supervisor.set_target(target=dev.compose_target(COMPOSE, {"app": v2.ref}, commit="c2",
                                                        release_id=2), source=TargetSource.DIRECT)
    for _ in range(12):  # ~3 s of passes: none raises, the check is retried with backoff
        await dev.supervisor.reconcile_once()
        await asyncio.sleep(0.25)
    [app] = dev.store.apps()
    assert app.update_status == "aborted", app
    match = re.fullmatch(r"not enough space for release c2: need (\d+) MB, (\d+) MB free",
                         app.status_message)
    assert match, app.status_message
    need, free = int(match.group(1)), int(match.group(2))
    assert need >= 12 and free <= 6, (need, free)  # 4 MB of random data, x3, + in flight
    said = [m for m in dev.log_messages() if "not enough space for release c2" in m]
    assert 1 <= len(said) <= 3, said  # backoff 1 s, 2 s, 4 s: no tight retry loop
    now = await dev.containers()
    assert now["app"].id == old.id and now["app"].status == "running", "old release kept"
    assert (await dev.engine.observe()).image_for(v2.ref) is None, "nothing was pulled"
    out = status_cli(dev, loop_dockerd.sock)
    assert "aborted" in out and "not enough space for release c2" in out

    filler.unlink()
    for _ in range(40):
        the_plan = await dev.supervisor.reconcile_once()
        if the_plan.converged:
            break
        await asyncio.sleep(0.5)
    new = (await dev.containers())["app"]
    assert new.image == v2.ref and new.status == "running" and new.id != old.id
    [app] = dev.store.apps()
    assert (app.update_status, app.commit) == ("done", "c2")
