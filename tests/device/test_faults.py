"""A supervisor SIGKILLed at random points of an update converges when it comes back:
no duplicate containers, no volume data lost (issue 3, fault tolerance)."""

from __future__ import annotations

import json
import os
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
from tests.device.conftest import cleanup_scope
from tests.support import images

pytestmark = pytest.mark.engine
CLI = [sys.executable, "-m", "edgefleet"]
KILLS = 20

COMPOSE = """
services:
  writer:
    command:
      - sh
      - -c
      - >-
        trap exit TERM; test -f /data/marker || echo kept > /data/marker;
        while true; do sleep 1; done
    volumes: ["data:/data"]
    environment: {ROUND: "{n}"}
  reader:
    command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
    volumes: ["data:/data"]
  other:
    command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
    environment: {ROUND: "{n}"}
volumes:
  data:
"""


def release(n: int, imgs: dict[str, str]) -> dict[str, Any]:
    rel = formats.release_from_compose(compose_yaml=COMPOSE.replace("{n}", str(n)),
                                       images=imgs, release_id=n)
    return rel.model_dump(mode="json")


def observe(scope: str) -> list[dict[str, Any]]:
    flt = json.dumps({"label": [f"io.edgefleet.scope={scope}"]})
    with images.engine_client() as c:
        return list(c.get("/containers/json", params={"all": "1", "filters": flt}).json())


def test_supervisor_sigkilled_during_updates_always_converges(
    tmp_path: Path, unique: str, test_images: dict[str, Any]
) -> None:
    scope = f"fault{unique}"
    rng = random.Random(int(unique, 16))
    v1 = images.build_and_push(f"fault-{unique}", "v1", cmd=["sh"])
    v2 = images.build_and_push(f"fault-{unique}", "v2", cmd=["sh"], extra="RUN echo 2 > /v")
    data = tmp_path / "data"
    config = tmp_path / "config.json"
    config.write_text("{}")
    apps = tmp_path / "apps.json"
    imgs1 = {"writer": v1.ref, "reader": v1.ref, "other": v1.ref}
    apps.write_text(json.dumps({"apps": {f"f{unique}": {
        "id": 31, "name": "faults", "releases": {"r1": release(1, imgs1)}}}}))

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*CLI, "supervisor", "run", "--config", str(config), "--apps",
                                 str(apps), "--data-dir", str(data), "--scope", scope],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_converged(proc: subprocess.Popen[bytes], n: int, image: str) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ctrs = observe(scope)
            if len(ctrs) == 3 and all(c["State"] == "running" for c in ctrs) and all(
                c["Image"] == image for c in ctrs if not c["Names"][0].startswith("/reader")
            ) and all(f"_{n}_r{n}" in c["Names"][0] for c in ctrs):
                return
            time.sleep(0.3)
        raise AssertionError(f"round {n} did not converge: {[c['Names'] for c in ctrs]}")

    proc = start()
    try:
        wait_converged(proc, 1, v1.ref)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store = Store(path=data / "edgefleet.sqlite")
        uuid = store.get_config(key="uuid")
        assert uuid
        marker = Path(next(m["Mountpoint"] for m in [images.engine_client().get(
            "/volumes/31_data").json()]))
        assert (marker / "marker").read_text() == "kept\n"
        for n in range(2, KILLS + 2):
            image = v2.ref if n % 2 == 0 else v1.ref
            imgs = {"writer": image, "reader": v1.ref, "other": image}
            target = TargetState(device_uuid=uuid, device=DeviceTarget(apps={
                f"f{unique}": AppTarget.model_validate({"id": 31, "name": "faults",
                                                        "releases": {f"r{n}": release(n, imgs)}})
            }))
            store.save_target(source="test", document=target.to_wire())
            proc = start()
            time.sleep(rng.uniform(0.3, 2.5))  # somewhere in start-up, pull, kill or create
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        last = KILLS + 1
        proc = start()
        wait_converged(proc, last, v2.ref if last % 2 == 0 else v1.ref)
        ctrs = observe(scope)
        names = sorted(c["Names"][0].split("_")[0] for c in ctrs)
        assert names == ["/other", "/reader", "/writer"], "exactly one container per service"
        assert (marker / "marker").read_text() == "kept\n", "volume data survived"
        store.close()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        cleanup_scope(scope)
