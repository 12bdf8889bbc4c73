"""`preload release` from a real fleet server: the release pushed to the registry is pulled
through a temporary engine (this machine's engine lacks it), its apps.json is what a device of
the fleet gets, and engine B on the target runs the images."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgefleet.client import FleetClient, Login
from edgefleet.model.target import AppTarget
from tests.preload.conftest import EngineA, run_in
from tests.server.conftest import new_fleet, new_tenant, register
from tests.support import images
from tests.support.dockerd import new_dockerd
from tests.support.fleet_server import RunningServer, run_server

pytestmark = [pytest.mark.engine, pytest.mark.slow]
CLI = [sys.executable, "-m", "edgefleet"]


@pytest.fixture(scope="module")
def own_registry(engine_sock: str) -> Iterator[str]:
    """A registry of this module's own (Debian's docker-registry on an ephemeral loopback
    port), stopped afterwards; the shared one on 127.0.0.1:5055 is never touched."""
    if not shutil.which("docker-registry"):
        pytest.skip("needs docker-registry (scripts/setup installs it)")
    with tempfile.TemporaryDirectory(prefix="efreg-") as tmp:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.close()
        cfg = Path(tmp) / "registry.yml"
        cfg.write_text(f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: "
                       f"{{rootdirectory: {tmp}/data}}\nhttp: {{addr: {addr}}}\n")
        proc = subprocess.Popen(["docker-registry", "serve", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://{addr}/v2/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                pytest.fail("the test registry did not start")
            yield addr
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def fleet_server(own_registry: str) -> Iterator[RunningServer]:
    with tempfile.TemporaryDirectory(prefix="efsrv-") as data, \
            run_server(data_dir=Path(data), registry=own_registry) as srv:
        yield srv


def test_release_from_the_fleet_server_through_a_temporary_engine(
    fleet_server: RunningServer, own_registry: str, engine_a: EngineA, tmp_path: Path
) -> None:
    tenant = new_tenant(fleet_server)
    fleet = new_fleet(tenant)
    device = register(fleet_server, fleet)
    root = tmp_path / "app"
    (root / "web").mkdir(parents=True)
    shutil.copy(images.BUSYBOX, root / "web" / "busybox")
    (root / "web" / "Dockerfile").write_text(images.busybox_dockerfile(
        extra="RUN echo from-server > /marker"))
    (root / "docker-compose.yml").write_text(
        "services:\n  web:\n    build: ./web\n    restart: always\n")
    client = FleetClient(login=Login(url=fleet_server.url, token=tenant.token))
    commit = ""
    try:
        events = list(client.push(fleet=fleet.name, source=root))
        assert events[-1]["status"] == "success", events[-1]
        commit = events[-1]["commit"]
        client.set_variable(kind="env", fleet=fleet.name, name="GREETING", value="hello")
        client.set_variable(kind="config", fleet=fleet.name, name="BALENA_HOST_X", value="1")
        ref = client.release(commit=commit)["images"][0]["ref"]
        assert ref.startswith(f"{own_registry}/") and "@sha256:" in ref
        data_root = tmp_path / "part" / "docker"
        data_root.parent.mkdir()
        done = subprocess.run([*CLI, "preload", "release", fleet.name, "--data-root",
                               str(data_root), "--server", fleet_server.url, "--token",
                               tenant.token, "--engine-socket", engine_a.dockerd.sock, "--pin"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "pulled through a temporary engine" in " ".join(done.stderr.split())
        apps = json.loads((tmp_path / "part" / "apps.json").read_text())
        state = device.http.get(f"/device/v3/{device.uuid}/state").json()[device.uuid]
        assert apps["pinDevice"] is True
        assert apps["config"] == state["config"]
        mine = apps["apps"][fleet.uuid]
        theirs = state["apps"][fleet.uuid]
        assert (mine["id"], mine["name"]) == (theirs["id"], theirs["name"])
        assert mine["releases"][commit]["services"]["web"]["environment"] == {"GREETING": "hello"}
        # exactly the release a device of the fleet gets, service and image ids included, so
        # its first poll changes nothing
        def norm(app: dict[str, object]) -> dict[str, object]:
            return dict(AppTarget.model_validate(app).model_dump(mode="json"))
        assert norm(mine) == norm(theirs)
        b = new_dockerd(data_root=data_root)
        b.start()
        try:
            assert run_in(b.sock, ref, ["cat", "/marker"]) == (0, "from-server\n")
        finally:
            b.cleanup()
        bad = subprocess.run([*CLI, "preload", "release", "no-such-fleet", "--data-root",
                              str(tmp_path / "other"), "--server", fleet_server.url, "--token",
                              tenant.token], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "404" in bad.stderr
        assert not (tmp_path / "other").exists()
    finally:
        with images.engine_client() as engine:  # the server built it on the shared engine
            if commit:
                for img in client.release(commit=commit)["images"]:
                    repo = img["ref"].split("@")[0]
                    engine.delete(f"/images/{repo}:{commit}", params={"force": "1"})
        client.close()
        device.http.close()
        tenant.http.close()
