"""An engine SIGKILLed while the supervisor starts a container: dockerd 20.10 comes back with a
stale containerd task for it, and every later start of that container fails ("task <id>:
already exists"; "id already in use" when the kill lands in runc's start). The supervisor
recovers by removing and recreating the container (same config; volumes are kept).

The kill lands inside the start deterministically: the private engine's default runtime is a
wrapper around runc that, while armed, sleeps in `runc create` (containerd has made the task,
dockerd has not recorded it: "task <id>: already exists" after) or in `runc start` (runc's
state is left behind: "id already in use" after)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgefleet.device.store import Store
from edgefleet.model import formats
from edgefleet.model.target import AppTarget, DeviceTarget, TargetState
from tests.support import images
from tests.support.dockerd import new_dockerd

pytestmark = pytest.mark.engine
CLI = [sys.executable, "-m", "edgefleet"]
COMPOSE = """
services:
  main:
    command: ["sh", "-c", "echo ran > /d/ran; exec sleep 100000"]
    stop_grace_period: 1s
    volumes: ["d:/d"]
volumes:
  d:
"""
SLOW_RUNC = """#!/bin/sh
for a in "$@"; do
  if [ "$a" = {phase} ] && [ -e {armed} ]; then touch {entered}; sleep 2; fi
done
exec runc "$@"
"""


def _running(sock: str) -> list[dict[str, Any]]:
    try:
        with images.engine_client(sock, timeout=5) as c:
            flt = json.dumps({"label": ["io.edgefleet.scope=midstart"]})
            ctrs = c.get("/containers/json", params={"all": "1", "filters": flt}).json()
    except Exception:
        return []
    return [c for c in ctrs if c["State"] == "running"]


def _wait(check: Any, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("phase", ["create", "start"])
def test_engine_killed_mid_start_the_container_is_recreated(
    tmp_path: Path, test_images: dict[str, Any], phase: str
) -> None:
    armed, entered = tmp_path / "armed", tmp_path / "entered"
    engine = new_dockerd()
    wrapper = engine.root / "slowrunc"
    engine.root.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(SLOW_RUNC.format(armed=armed, entered=entered, phase=phase))
    wrapper.chmod(0o755)
    engine.extra_args = (f"--add-runtime=slowrunc={wrapper}", "--default-runtime=slowrunc")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"appUpdatePollInterval": 10000}))
    data = tmp_path / "data"
    store = Store(path=data / "edgefleet.sqlite")
    store.set_config(key="uuid", value="midstartdev")
    rel = formats.release_from_compose(compose_yaml=COMPOSE,
                                       images={"main": test_images["sleeper"].ref},
                                       release_id=1)
    store.save_target(source="test", document=TargetState(
        device_uuid="midstartdev", device=DeviceTarget(apps={"midstartapp": AppTarget(
            id=42, name="ms", releases={"r1": rel})})).to_wire())
    proc: subprocess.Popen[bytes] | None = None
    try:
        engine.start()
        armed.touch()
        proc = subprocess.Popen([*CLI, "supervisor", "run", "--config", str(config),
                                 "--data-dir", str(data), "--engine-socket", engine.sock,
                                 "--scope", "midstart", "--api-port", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert _wait(entered.exists, timeout=90), "the supervisor never started the container"
        engine.kill(signal.SIGKILL)  # dockerd and containerd die, the task's shim lives on
        armed.unlink()
        time.sleep(0.5)
        engine.start()
        # without recovery every start fails for ~120 s ("task ...: already exists")
        assert _wait(lambda: len(_running(engine.sock)) == 1, timeout=45), (
            "the service never ran again after the engine died mid-start: "
            + " | ".join(r.message for r in store.logs(limit=10_000)[-4:]))
        assert proc.poll() is None
        with images.engine_client(engine.sock) as c:
            mount = c.get("/volumes/42_d").json()["Mountpoint"]
        assert (Path(mount) / "ran").read_text() == "ran\n"
        messages = [r.message for r in store.logs(limit=10_000)]
        assert any("recreat" in m and "main" in m for m in messages), messages
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        store.close()
        engine.remove_containers()
        engine.cleanup()
