"""Bad input gets a clear error and leaves the target as it was: unknown image, not a data
root, an engine running on the target, apps.json that does not validate or is already there,
too little space, bad static-IP settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.model import formats
from edgefleet.preload.bundle import Manifest
from edgefleet.preload.errors import PreloadError
from edgefleet.preload.inject import InjectOptions, inject
from edgefleet.preload.netconf import parse_static_ip
from tests.preload.conftest import EngineA, snapshot
from tests.support.loopfs import loop_mount

pytestmark = pytest.mark.engine
CLI = [sys.executable, "-m", "edgefleet"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "preload", *args], capture_output=True, text=True, timeout=120)


def _err(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    return " ".join(done.stderr.split())


def _apps(path: Path, image: str, app_uuid: str = "b" * 32) -> Path:
    rel = formats.release_from_compose(compose_yaml="services:\n  main: {}\n",
                                       images={"main": image})
    path.write_text(json.dumps({"apps": {app_uuid: {
        "id": 3, "name": app_uuid[:4], "releases": {"r1": rel.model_dump(mode="json")}}}}))
    return path


def test_unknown_image_and_not_a_data_root_on_extract(engine_a: EngineA, tmp_path: Path) -> None:
    out = tmp_path / "out"
    err = _err(_cli("extract", "--data-root", str(engine_a.data_root), "--out", str(out),
                    engine_a.image_refs()[0], "nope/never:v1"))
    assert "no image 'nope/never:v1'" in err
    assert not out.exists()
    err = _err(_cli("extract", "--data-root", str(tmp_path), "--out", str(out), "x"))
    assert "is not an overlay2 engine data root" in err
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("x")
    err = _err(_cli("extract", "--data-root", str(engine_a.data_root), "--out", str(full),
                    engine_a.image_refs()[0]))
    assert "is not an empty directory" in err
    assert [p.name for p in full.iterdir()] == ["keep"]


def test_inject_refuses_a_directory_that_is_not_a_data_root(
    bundle: tuple[Path, Manifest], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    before = snapshot(home)
    err = _err(_cli("inject", "--data-root", str(home), "--from", str(bundle[0])))
    assert "is not an engine data root" in err and "notes.txt" in err
    assert snapshot(home) == before
    err = _err(_cli("inject", "--data-root", str(tmp_path / "r"), "--from", str(home)))
    assert "is not a preload bundle" in err


def test_inject_refuses_a_root_whose_engine_runs(
    engine_a: EngineA, bundle: tuple[Path, Manifest]
) -> None:
    root = engine_a.data_root
    repos = (root / "image" / "overlay2" / "repositories.json").read_bytes()
    layers = sorted(os.listdir(root / "image" / "overlay2" / "layerdb" / "sha256"))
    with pytest.raises(PreloadError, match=r"an engine is running on .*stop it first"):
        inject(options=InjectOptions(data_root=root, bundle=bundle[0]))
    assert (root / "image" / "overlay2" / "repositories.json").read_bytes() == repos
    assert sorted(os.listdir(root / "image" / "overlay2" / "layerdb" / "sha256")) == layers
    assert not (root.parent / "apps.json").exists()


def test_invalid_apps_json_or_one_naming_missing_images_is_refused(
    engine_a: EngineA, bundle: tuple[Path, Manifest], tmp_path: Path
) -> None:
    target = tmp_path / "docker"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"apps": {"x": {"id": 1, "releases": {}}}}))
    err = _err(_cli("inject", "--data-root", str(target), "--from", str(bundle[0]),
                    "--apps", str(bad)))
    assert "apps.x.releases" in err
    bad.write_text("{not json")
    assert "is not JSON" in _err(_cli("inject", "--data-root", str(target), "--from",
                                      str(bundle[0]), "--apps", str(bad)))
    elsewhere = _apps(tmp_path / "elsewhere.json", "127.0.0.1:9/not/in-bundle:v1")
    err = _err(_cli("inject", "--data-root", str(target), "--from", str(bundle[0]),
                    "--apps", str(elsewhere)))
    assert "would have to pull them" in err and "not/in-bundle:v1" in err
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.json", "elsewhere.json"]


def test_existing_apps_json_is_merged_only_with_merge(
    engine_a: EngineA, bundle: tuple[Path, Manifest], tmp_path: Path
) -> None:
    target = tmp_path / "docker"
    web = engine_a.image_refs()[0]
    first = _apps(tmp_path / "first.json", web, "c" * 32)
    second = _apps(tmp_path / "second.json", engine_a.image_refs()[1], "d" * 32)
    inject(options=InjectOptions(data_root=target, bundle=bundle[0], apps=first))
    before = (tmp_path / "apps.json").read_text()
    with pytest.raises(PreloadError, match="--merge"):
        inject(options=InjectOptions(data_root=target, bundle=bundle[0], apps=second))
    assert (tmp_path / "apps.json").read_text() == before
    inject(options=InjectOptions(data_root=target, bundle=bundle[0], apps=second, merge=True))
    merged = json.loads((tmp_path / "apps.json").read_text())
    assert set(merged["apps"]) == {"c" * 32, "d" * 32}


def test_static_ip_keyfile_and_bad_settings(
    bundle: tuple[Path, Manifest], tmp_path: Path
) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    target = tmp_path / "docker"
    err = _err(_cli("inject", "--data-root", str(target), "--from", str(bundle[0]), "--boot",
                    str(boot), "--static-ip", "10.0.0.10/24", "--gateway", "10.9.0.1"))
    assert "gateway 10.9.0.1 is not in 10.0.0.0/24" in err
    assert not target.exists() and snapshot(boot) == {}
    done = _cli("inject", "--data-root", str(target), "--from", str(bundle[0]), "--boot",
                str(boot), "--static-ip", "10.0.0.10/24", "--gateway", "10.0.0.1", "--dns",
                "1.1.1.1,8.8.8.8")
    assert done.returncode == 0, done.stderr
    text = (boot / "system-connections" / "preload-static-ip").read_text()
    assert "method=manual" in text and "address1=10.0.0.10/24,10.0.0.1" in text
    assert "dns=1.1.1.1;8.8.8.8;" in text
    assert oct((boot / "system-connections" / "preload-static-ip").stat().st_mode)[-3:] == "600"
    with pytest.raises(PreloadError, match="prefix length"):
        parse_static_ip(address="10.0.0.10", gateway="10.0.0.1", dns=None)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB ext4, loop-mounted: smaller than the bundle (12 MB of random data + margin)."""
    with loop_mount(image=tmp_path / "disk.img", mountpoint=tmp_path / "mnt", size_mb=16) as mnt:
        yield mnt


def test_too_little_space_is_refused_before_writing(
    bundle: tuple[Path, Manifest], small_fs: Path
) -> None:
    before = snapshot(small_fs)
    err = _err(_cli("inject", "--data-root", str(small_fs / "docker"), "--from",
                    str(bundle[0])))
    assert "not enough space" in err and "nothing was written" in err
    assert snapshot(small_fs) == before


def test_a_failure_while_writing_is_undone(
    bundle: tuple[Path, Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgefleet.engine import rootwrite

    target = tmp_path / "docker"
    target.mkdir()
    calls = []
    real = rootwrite.commit_layerdb

    def failing(**kw: object) -> Path:
        calls.append(kw)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(rootwrite, "commit_layerdb", failing)
    with pytest.raises(PreloadError, match=r"failed and was undone.*No space left"):
        inject(options=InjectOptions(data_root=target, bundle=bundle[0]))
    assert snapshot(target) == {}


def test_a_failed_tag_merge_undoes_layers_and_apps_json(
    bundle: tuple[Path, Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgefleet.engine import rootwrite

    target = tmp_path / "part" / "docker"
    target.parent.mkdir()
    apps = _apps(tmp_path / "apps-in.json", next(iter(bundle[1].images[0].refs)))

    def failing(**kw: object) -> list[str]:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(rootwrite, "merge_repositories", failing)
    with pytest.raises(PreloadError, match="failed and was undone"):
        inject(options=InjectOptions(data_root=target, bundle=bundle[0], apps=apps))
    assert snapshot(tmp_path / "part") == {}
