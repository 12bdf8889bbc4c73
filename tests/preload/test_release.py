"""`preload release` from a compose project built locally: images built on engine A, apps.json
for the release, both injected; engine B on the target lists the images apps.json names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.model import formats
from edgefleet.preload.release import app_uuid_for
from tests.preload.conftest import EngineA, engine_images, run_in
from tests.support import images
from tests.support.dockerd import new_dockerd

pytestmark = [pytest.mark.engine, pytest.mark.slow]
CLI = [sys.executable, "-m", "edgefleet"]


def _project(root: Path) -> Path:
    for svc in ("api", "worker"):
        ctx = root / svc
        ctx.mkdir(parents=True)
        shutil.copy(images.BUSYBOX, ctx / "busybox")
        (ctx / "Dockerfile").write_text(images.busybox_dockerfile(
            extra=f"RUN echo {svc} > /marker\nCOPY . /ctx"))
        (ctx / ".dockerignore").write_text("secret.txt\n")
        (ctx / "secret.txt").write_text("never in the image")
    (root / "docker-compose.yml").write_text(
        "services:\n  api:\n    build: ./api\n    restart: always\n"
        "  worker:\n    build:\n      context: ./worker\n      dockerfile: Dockerfile\n"
        "volumes:\n  data: {}\n")
    return root


def test_release_from_a_local_compose_project(engine_a: EngineA, tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    data_root = tmp_path / "part" / "docker"
    data_root.parent.mkdir()
    done = subprocess.run([*CLI, "preload", "release", "Demo Fleet", "--project", str(project),
                           "--data-root", str(data_root), "--engine-socket",
                           engine_a.dockerd.sock, "--release", "r1", "--pin"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    apps = formats.parse_apps_json(data=json.loads((tmp_path / "part" / "apps.json").read_text()))
    assert apps.pin_device
    app = apps.apps[app_uuid_for("Demo Fleet")]
    services = app.releases["r1"].services
    assert {s: services[s].image for s in services} == {
        "api": "demo-fleet/api:r1", "worker": "demo-fleet/worker:r1"}
    b = new_dockerd(data_root=data_root)
    b.start()
    try:
        listed = {t for tags in engine_images(b.sock).values() for t in tags}
        assert {"demo-fleet/api:r1", "demo-fleet/worker:r1"} <= listed
        assert run_in(b.sock, "demo-fleet/worker:r1", ["cat", "/marker"]) == (0, "worker\n")
        assert run_in(b.sock, "demo-fleet/api:r1", ["test", "-e", "/ctx/Dockerfile"])[0] == 0
        code, _ = run_in(b.sock, "demo-fleet/api:r1", ["test", "-e", "/ctx/secret.txt"])
        assert code == 1, ".dockerignore is honoured"
    finally:
        b.cleanup()


def test_release_of_a_broken_project_changes_nothing(engine_a: EngineA, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "docker-compose.yml").write_text("services:\n  api:\n    build: ./missing\n")
    data_root = tmp_path / "docker"
    done = subprocess.run([*CLI, "preload", "release", "f", "--project", str(project),
                           "--data-root", str(data_root), "--engine-socket",
                           engine_a.dockerd.sock], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "services.api.build: no directory" in done.stderr
    assert not data_root.exists()
