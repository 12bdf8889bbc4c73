"""Extract from engine A, inject into an empty data root, start engine B on it: same images,
same tags, containers run, and a supervisor starts the app from apps.json with no registry."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgefleet.device.store import Store
from edgefleet.model import formats
from edgefleet.preload.appsjson import apps_json_path
from edgefleet.preload.bundle import Manifest
from edgefleet.preload.extract import extract
from edgefleet.preload.inject import InjectOptions, inject
from tests.preload.conftest import EngineA, engine_images, run_in
from tests.support import images
from tests.support.dockerd import new_dockerd

pytestmark = [pytest.mark.engine, pytest.mark.slow]
CLI = [sys.executable, "-m", "edgefleet"]


def _apps_json(path: Path, image: str, *, pin: bool) -> str:
    app_uuid = "a" * 32
    rel = formats.release_from_compose(
        compose_yaml='services:\n  web:\n    command: ["sh", "-c", "cat /marker; sleep 1000"]\n',
        images={"web": image})
    path.write_text(json.dumps({"pinDevice": pin, "apps": {app_uuid: {
        "id": 7, "name": "preloaded", "releases": {"c0ffee": rel.model_dump(mode="json")}}}}))
    return app_uuid


def test_shared_layers_are_stored_once(engine_a: EngineA, bundle: tuple[Path, Manifest]) -> None:
    out, manifest = bundle
    per_image = sum(len(img.layers) for img in manifest.images)
    stored = sorted(p.name for p in (out / "layers").iterdir())
    assert len(stored) == len(manifest.layers) < per_image
    assert {img.id for img in manifest.images} == set(engine_a.ids.values())
    web = next(i for i in manifest.images if i.asked_as.endswith("/web:v1"))
    assert set(web.refs) == {f"{engine_a.base}/web:v1", f"{engine_a.base}/web:latest"}


def test_inject_into_empty_root_then_engine_b_runs_them_and_the_supervisor_starts_the_app(
    engine_a: EngineA, bundle: tuple[Path, Manifest], tmp_path: Path, unique: str
) -> None:
    out, manifest = bundle
    partition = tmp_path / "data-partition"
    partition.mkdir()
    data_root = partition / "docker"
    web = engine_a.image_refs()[0]
    app_uuid = _apps_json(tmp_path / "apps.json", web, pin=True)
    done = subprocess.run([*CLI, "preload", "inject", "--data-root", str(data_root), "--from",
                           str(out), "--apps", str(tmp_path / "apps.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(manifest.layers)} layer(s) copied" in done.stderr
    assert apps_json_path(data_root=data_root) == partition / "apps.json"
    assert (partition / "apps.json").exists()
    links = {p.name for p in (data_root / "overlay2" / "l").iterdir()}
    assert len(links) == len(manifest.layers)

    b = new_dockerd(data_root=data_root)
    b.start()
    try:
        on_a = engine_images(engine_a.dockerd.sock)
        on_b = engine_images(b.sock)
        for image_id in set(engine_a.ids.values()):
            assert on_b[image_id] == on_a[image_id]
        for ref in engine_a.image_refs():
            code, text = run_in(b.sock, ref, ["cat", "/marker"])
            assert code == 0 and text.strip() == ref.split("/")[-1].split(":")[0]
        code, text = run_in(b.sock, engine_a.image_refs()[2],
                            ["sh", "-c", "ls /d; [ -e /bin/ls ] || echo gone; stat -c %h /d/c"])
        assert text.split() == ["c", "h", "s", "gone", "2"], text
        code, text = run_in(b.sock, engine_a.image_refs()[1], ["sh", "-c", "wc -c < /blob"])
        assert text.strip() == str(12 << 20)

        # first boot: supervisor on B, apps.json from the data partition, nothing pullable
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"deviceType": "generic-amd64"}))
        sup_data = tmp_path / "supervisor"
        proc = subprocess.Popen([*CLI, "supervisor", "run", "--config", str(config), "--apps",
                                 str(partition / "apps.json"), "--data-dir", str(sup_data),
                                 "--engine-socket", b.sock, "--scope", f"pl{unique}",
                                 "--engine-pidfile", str(b.root / "docker.pid")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            running = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not running:
                time.sleep(0.5)
                with images.engine_client(b.sock) as c:
                    running = c.get("/containers/json", params={"filters": json.dumps(
                        {"label": [f"io.balena.app-uuid={app_uuid}"]})}).json()
            assert running, "the supervisor did not start the preloaded app"
            assert running[0]["ImageID"] == engine_a.ids[web]
            assert json.loads((partition / "apps.json").read_text()) == {}
            assert (partition / "apps.json.preloaded").exists()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        store = Store(path=sup_data / "edgefleet.sqlite")
        try:
            assert store.get_config(key="pinDevice") == "true"
        finally:
            store.close()
        assert engine_images(b.sock).keys() == on_b.keys(), "nothing was pulled"
    finally:
        b.cleanup()


def test_inject_keeps_the_images_already_there_and_skips_present_layers(
    engine_a: EngineA, bundle: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out, manifest = bundle
    data_root = tmp_path / "docker"
    c = new_dockerd(data_root=data_root)
    c.start()
    try:
        sup = "balena_supervisor:v14.0.8"
        sup_id = images.build(sup, sock=c.sock, dockerfile=images.busybox_dockerfile(
            extra="RUN echo supervisor > /marker"))
        c.stop()
        first = inject(options=InjectOptions(data_root=data_root, bundle=out))
        assert first.layers_copied + first.layers_skipped == len(manifest.layers)
        assert first.moved_tags == []
        again = inject(options=InjectOptions(data_root=data_root, bundle=out))
        assert again.layers_copied == 0 and again.layers_skipped == len(manifest.layers)
        c.start()
        listed = engine_images(c.sock)
        assert listed[sup_id] == (sup,)
        for ref, image_id in engine_a.ids.items():
            assert ref in listed[image_id]
        assert run_in(c.sock, sup, ["cat", "/marker"]) == (0, "supervisor\n")
        assert run_in(c.sock, engine_a.image_refs()[0], ["cat", "/marker"]) == (0, "web\n")
    finally:
        c.cleanup()


def test_extract_from_an_offline_tar_copy(engine_a: EngineA, bundle: tuple[Path, Manifest],
                                          tmp_path: Path) -> None:
    """Seed 003's way: `tar` the data root, unpack it elsewhere, extract from the copy."""
    copy = tmp_path / "copy"
    copy.mkdir()
    tar = "tar --xattrs --xattrs-include='*' --numeric-owner"
    subprocess.run(f"{tar} -C {engine_a.data_root} -cf - image overlay2 | {tar} -C {copy} -xf -",
                   shell=True, check=True, timeout=120)
    manifest = extract(data_root=copy, out=tmp_path / "out", refs=engine_a.image_refs())
    assert manifest.verified
    assert manifest.layers == bundle[1].layers
    assert [i.id for i in manifest.images] == [i.id for i in bundle[1].images]
