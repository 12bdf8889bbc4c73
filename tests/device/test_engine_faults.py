"""An engine SIGKILLed during updates: the supervisor notices, reconnects with backoff and
converges once the engine is back; volume data survives (issue 3, fault tolerance).

The services ignore SIGTERM (pid 1) and have a 1 s stop_grace_period: the restarted engine
and the supervisor's kills stop them after 1 s. The kill, 1-3 s after the supervisor starts,
lands while it stops the old containers or while it starts the new ones; a kill mid-start
leaves dockerd 20.10 a stale task, which the supervisor cures by recreating the container
(test_engine_kill_mid_start.py makes that case deterministic)."""

from __future__ import annotations

import json
import random
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
from tests.support.dockerd import Dockerd

pytestmark = pytest.mark.engine
CLI = [sys.executable, "-m", "edgefleet"]
ENGINE_KILLS = 5

COMPOSE = """
services:
  keeper:
    command: ["sh", "-c", "test -f /d/marker || echo kept > /d/marker; exec sleep 100000"]
    stop_grace_period: 1s
    volumes: ["d:/d"]
    environment: {ROUND: "{n}"}
  other:
    command: ["sh", "-c", "exec sleep 100000"]
    stop_grace_period: 1s
    environment: {ROUND: "{n}"}
volumes:
  d:
"""


def observe(sock: str) -> list[dict[str, Any]]:
    try:
        with images.engine_client(sock, timeout=5) as c:
            flt = json.dumps({"label": ["io.edgefleet.scope=engfault"]})
            return list(c.get("/containers/json", params={"all": "1", "filters": flt}).json())
    except Exception:
        return []


def test_engine_sigkilled_mid_update_converges_when_it_returns(
    private_dockerd: Dockerd, tmp_path: Path, unique: str, test_images: dict[str, Any]
) -> None:
    rng = random.Random(int(unique, 16))
    sock = private_dockerd.sock
    image = test_images["sleeper"].ref
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"appUpdatePollInterval": 10000}))
    data = tmp_path / "data"
    store = Store(path=data / "edgefleet.sqlite")
    store.set_config(key="uuid", value="engfaultdev")

    def save(n: int) -> None:
        rel = formats.release_from_compose(compose_yaml=COMPOSE.replace("{n}", str(n)),
                                           images={"keeper": image, "other": image},
                                           release_id=n)
        target = TargetState(device_uuid="engfaultdev", device=DeviceTarget(apps={
            "engfaultapp": AppTarget(id=41, name="ef", releases={f"r{n}": rel})}))
        store.save_target(source="test", document=target.to_wire())

    def converged(n: int, timeout: float = 120) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ctrs = observe(sock)
            if len(ctrs) == 2 and all(c["State"] == "running" and f"_r{n}" in c["Names"][0]
                                      for c in ctrs):
                return True
            time.sleep(0.5)
        return False

    def start_supervisor() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*CLI, "supervisor", "run", "--config", str(config),
                                 "--data-dir", str(data), "--engine-socket", sock,
                                 "--scope", "engfault", "--api-port", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    save(1)
    proc = start_supervisor()
    try:
        assert converged(1), "first release"
        with images.engine_client(sock) as c:
            mount = c.get("/volumes/41_d").json()["Mountpoint"]
        marker = Path(mount) / "marker"
        assert marker.read_text() == "kept\n"
        for n in range(2, ENGINE_KILLS + 2):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            save(n)
            proc = start_supervisor()
            time.sleep(rng.uniform(1.0, 3.0))  # the supervisor is starting or updating
            private_dockerd.kill(signal.SIGKILL)
            time.sleep(rng.uniform(0.5, 2.0))
            private_dockerd.start()
            assert converged(n), f"did not converge after engine kill {n - 1}"
            assert proc.poll() is None, "the supervisor survived the dead engine"
            assert marker.read_text() == "kept\n", "volume data survived"
        names = sorted(c["Names"][0].split("_")[0] for c in observe(sock))
        assert names == ["/keeper", "/other"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        store.close()
