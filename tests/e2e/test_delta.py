"""End to end, delta updates (issue 19): a fleet server process, the registry, and a device on
its own dockerd with the `delta` configuration variable on (fleet-wide).

- Release 2 changes one source file inside a 50 MB application layer; release 3 rebuilds a
  dependency layer with identical contents and new timestamps. The device updates to each
  through a delta and runs it; the bytes the server sent are compared with what a registry
  pull of the same update downloads (the compressed blobs of the layers the device lacks).
- A corrupted delta is refused (its layer does not hash to its diffId), the device falls back
  to a pull, says so in its log, and still updates."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.device.store import Store
from tests.e2e.devices import E2EDevice, running_device, wait_for
from tests.e2e.test_fleet import Fleet, fleet_server  # noqa: F401 - the fixture

pytestmark = [pytest.mark.engine, pytest.mark.slow]

MB = 1 << 20
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV DEPS_BUILD={deps_build}
COPY deps/ /deps/
COPY app/ /app/
CMD ["sh", "-c", "trap exit TERM; cat /app/version.txt; while true; do sleep 1; done"]
"""


def write_project(root: Path, *, version: str, deps_build: int, touch_deps: bool = False) -> Path:
    """One service: busybox, a 16 MB dependency layer, a 50 MB application layer (random data
    and a small source file `version.txt`). Files are written once and then only changed as
    asked, so unchanged files keep their contents and timestamps between releases."""
    svc = root / "app"
    if not svc.exists():
        (svc / "deps").mkdir(parents=True)
        (svc / "app").mkdir()
        shutil.copy2("/bin/busybox", svc / "busybox")
        for i in range(4):
            (svc / "deps" / f"lib{i}.so").write_bytes(os.urandom(4 * MB))
        for i in range(10):
            (svc / "app" / f"data{i}.bin").write_bytes(os.urandom(5 * MB))
        (root / "docker-compose.yml").write_text(
            "version: '2.1'\nservices:\n  app:\n    build: ./app\n    restart: always\n")
    (svc / "Dockerfile").write_text(DOCKERFILE.format(deps_build=deps_build))
    source = svc / "app" / "version.txt"
    text = f"print('release {version}')\n"
    if not source.exists() or source.read_text() != text:
        source.write_text(text)
    if touch_deps:  # same contents, new timestamps
        later = time.time() + 3600
        for f in (svc / "deps").iterdir():
            os.utime(f, (later, later))
    return root


@pytest.fixture
def device(tmp_path: Path) -> Iterator[E2EDevice]:
    with running_device("delta1", tmp_path / "dev") as dev:
        yield dev


def _stats(fleet: Fleet) -> dict[str, Any]:
    r = httpx.get(f"{fleet.url}/api/v3/delta-stats", timeout=30,
                  headers={"Authorization": f"Bearer {fleet.token}"})
    r.raise_for_status()
    return dict(r.json())


def _ref(fleet: Fleet, commit: str) -> str:
    with fleet.api() as c:
        return str(c.get(f"/releases/{commit}").json()["images"][0]["ref"])


def _job(fleet: Fleet, src: str, dest: str) -> dict[str, Any]:
    return next(j for j in _stats(fleet)["deltas"] if j["src"] == src and j["dest"] == dest)


def test_device_updates_through_deltas_and_falls_back_on_a_corrupted_one(
    fleet_server: Fleet, device: E2EDevice, tmp_path: Path  # noqa: F811
) -> None:
    fleet, dev = fleet_server, device
    fleet.cli("fleet", "create", "delta", "--type", "generic-amd64")
    with fleet.api() as c:
        c.put("/variables", json={"kind": "config", "fleet": "delta",
                                  "name": "BALENA_SUPERVISOR_DELTA", "value": "1"}
              ).raise_for_status()
    out = tmp_path / "provisioning.json"
    dev.root.mkdir(parents=True, exist_ok=True)
    fleet.cli("device", "config", "delta", "-o", str(out), "--poll-interval", "10000")
    dev.provision(json.loads(out.read_text()))
    project = tmp_path / "project"
    c1 = fleet.push("delta", write_project(project, version="1", deps_build=1))
    dev.start()
    try:
        wait_for("the device to run release 1", lambda: dev.running_commits() == {"app": c1},
                 timeout=120)

        def update_to(commit: str) -> None:
            fleet.cli("device", "pin", dev.uuid, commit)
            wait_for(f"the device to run {commit[:7]}",
                     lambda: dev.running_commits() == {"app": commit}, timeout=120)

        # --- release 2: one source file changed inside the 50 MB application layer ---------
        fleet.cli("device", "pin", dev.uuid, c1)
        c2 = fleet.push("delta", write_project(project, version="2", deps_build=1))
        served0 = _stats(fleet)["served_bytes"]
        update_to(c2)
        job2 = _job(fleet, _ref(fleet, c1), _ref(fleet, c2))
        sent2 = _stats(fleet)["served_bytes"] - served0
        assert sent2 == job2["size"] > 0
        assert job2["pull_bytes"] > 50 * MB
        assert job2["pull_bytes"] >= 10 * sent2, job2

        # --- release 3: the dependency layer rebuilt with identical contents ----------------
        c3 = fleet.push("delta", write_project(project, version="2", deps_build=3,
                                               touch_deps=True))
        served0 = _stats(fleet)["served_bytes"]
        update_to(c3)
        job3 = _job(fleet, _ref(fleet, c2), _ref(fleet, c3))
        sent3 = _stats(fleet)["served_bytes"] - served0
        assert sent3 == job3["size"] > 0 and job3["new_bytes"] > 16 * MB
        assert job3["pull_bytes"] >= 50 * sent3, job3
        log = dev.log_path.read_text(errors="replace")
        assert log.count("Applied delta for image") == 2, dev.log_tail()
        assert "pulling the image instead" not in log

        # --- release 4: its delta is corrupted on the server; the device pulls instead ------
        c4 = fleet.push("delta", write_project(project, version="4", deps_build=3))
        src, dest = _ref(fleet, c3), _ref(fleet, c4)
        key = str(dev.config()["deviceApiKey"])

        def ready() -> bool:
            r = httpx.get(f"{fleet.url}/api/v3/delta", params={"src": src, "dest": dest},
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)
            return r.status_code == 200
        wait_for("the server to make the release-4 delta", ready, timeout=120)
        path = tmp_path / "server" / "deltas" / f"{_job(fleet, src, dest)['key']}.delta"
        data = bytearray(path.read_bytes())
        data[-200] ^= 0xFF  # inside the last layer's frame
        path.write_bytes(bytes(data))
        update_to(c4)
        log = dev.log_path.read_text(errors="replace")
        assert f"Delta update of '{dest}' failed, pulling the image instead" in log, \
            dev.log_tail()
        assert log.count("Applied delta for image") == 2
        # ... and counts it in the supervisor's status
        store = Store(path=dev.root / "data" / "edgefleet.sqlite")
        try:
            api_key = store.api_key(app_uuid="")
        finally:
            store.close()
        status = httpx.get(f"http://127.0.0.1:{dev.config()['listenPort']}/v2/state/status",
                           params={"apikey": api_key}, timeout=10).json()
        assert status["deltas"]["applied"] == 2 and status["deltas"]["fallbacks"] == 1
        assert dest in status["deltas"]["last_fallback"]
    finally:
        dev.stop()
