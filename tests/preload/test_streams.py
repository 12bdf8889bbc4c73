"""Bundles of both formats through the real CLI: `preload extract --layers stream|tree`, then
`preload inject` into an empty root, then an engine started on it lists the same images and
runs them (hard links, whiteouts and opaque dirs of the tricky image intact). A stream bundle
holds each layer as the tar stream its diffId hashes; one flipped byte in it is refused."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.preload.bundle import FORMAT, FORMAT_STREAMS, layer_dir, read_manifest
from tests.preload.conftest import EngineA, engine_images, run_in, snapshot
from tests.support.dockerd import new_dockerd

pytestmark = [pytest.mark.engine]
CLI = [sys.executable, "-m", "edgefleet", "preload"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("layers", ["stream", "tree"])
def test_cli_extract_then_inject_and_an_engine_runs_the_images(
    engine_a: EngineA, tmp_path: Path, layers: str
) -> None:
    out = tmp_path / "bundle"
    done = _run("extract", "--data-root", str(engine_a.data_root), "--out", str(out),
                "--layers", layers, *engine_a.image_refs())
    assert done.returncode == 0, done.stderr
    manifest = read_manifest(out)
    assert manifest.format == (FORMAT_STREAMS if layers == "stream" else FORMAT)
    for chain, rec in manifest.layers.items():
        stored = layer_dir(bundle=out, chain_id=chain)
        if layers == "stream":
            assert not (stored / "diff").exists()
            digest = hashlib.sha256((stored / "layer.tar").read_bytes()).hexdigest()
            assert "sha256:" + digest == rec.diff_id
        else:
            assert (stored / "diff").is_dir() and not (stored / "layer.tar").exists()
    root = tmp_path / "part" / "docker"
    (tmp_path / "part").mkdir()
    done = _run("inject", "--data-root", str(root), "--from", str(out))
    assert done.returncode == 0, done.stderr
    b = new_dockerd(data_root=root)
    b.start()
    try:
        on_a, on_b = engine_images(engine_a.dockerd.sock), engine_images(b.sock)
        for image_id in set(engine_a.ids.values()):
            assert on_b[image_id] == on_a[image_id]
        web, worker, tricky = engine_a.image_refs()
        assert run_in(b.sock, web, ["cat", "/marker"]) == (0, "web\n")
        code, text = run_in(b.sock, tricky,
                            ["sh", "-c", "ls /d; [ -e /bin/ls ] || echo gone; stat -c %h /d/c"])
        assert code == 0 and text.split() == ["c", "h", "s", "gone", "2"], text
        code, text = run_in(b.sock, worker, ["sh", "-c", "wc -c < /blob"])
        assert code == 0 and text.strip() == str(12 << 20)
        # the engine rebuilds each layer's stream from the injected tree + tar-split: a save
        # is what a push or a `docker save` would send (fails if the tree differs)
        saved = subprocess.run(["docker", "-H", f"unix://{b.sock}", "save", tricky],
                               capture_output=True, timeout=120)
        assert saved.returncode == 0, saved.stderr[-500:]
    finally:
        b.cleanup()


def test_a_flipped_byte_in_a_stream_bundle_is_refused_and_nothing_is_written(
    engine_a: EngineA, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    worker = engine_a.image_refs()[1]
    done = _run("extract", "--data-root", str(engine_a.data_root), "--out", str(out), worker)
    assert done.returncode == 0, done.stderr
    manifest = read_manifest(out)
    chain = manifest.images[0].layers[-2]  # COPY blob /blob (12 MB)
    stream = layer_dir(bundle=out, chain_id=chain) / "layer.tar"
    with open(stream, "r+b") as fh:
        fh.seek(5_000_000)
        byte = fh.read(1)
        fh.seek(5_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "root"
    target.mkdir()
    done = _run("inject", "--data-root", str(target), "--from", str(out))
    assert done.returncode == 2
    assert chain in " ".join(done.stderr.split())
    assert snapshot(target) == {}
