"""`preload copy`: extract + inject in one step, straight from engine A's data root into an
empty one (no bundle): an engine started on it runs the images (hard links, whiteouts, opaque
dirs intact) and saves them; a second copy skips every layer; a flipped byte in the source is
refused, naming the image, layer and file, and the target is left as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.preload.errors import PreloadError
from edgefleet.preload.extract import select
from edgefleet.preload.inject import InjectOptions, inject
from tests.preload.conftest import EngineA, engine_images, run_in, snapshot
from tests.support.dockerd import new_dockerd

pytestmark = [pytest.mark.engine]
CLI = [sys.executable, "-m", "edgefleet", "preload"]


def _copy(engine_a: EngineA, root: Path, *refs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "copy", "--from-root", str(engine_a.data_root), "--data-root",
                           str(root), *refs], capture_output=True, text=True, timeout=120)


def test_copy_into_an_empty_root_then_an_engine_runs_and_saves_the_images(
    engine_a: EngineA, tmp_path: Path
) -> None:
    web, worker, tricky = engine_a.image_refs()
    root = tmp_path / "part" / "docker"
    (tmp_path / "part").mkdir()
    done = _copy(engine_a, root, web, engine_a.ids[worker],
                 engine_a.ids[tricky].removeprefix("sha256:")[:12])
    assert done.returncode == 0, done.stderr
    layers = len(select(data_root=engine_a.data_root, refs=engine_a.image_refs()).layers)
    assert f"{layers} layer(s) copied" in done.stderr
    again = _copy(engine_a, root, web)
    assert again.returncode == 0 and "0 layer(s) copied" in again.stderr, again.stderr
    b = new_dockerd(data_root=root)
    b.start()
    try:
        on_a, on_b = engine_images(engine_a.dockerd.sock), engine_images(b.sock)
        for image_id in set(engine_a.ids.values()):
            assert on_b[image_id] == on_a[image_id]
        assert run_in(b.sock, web, ["cat", "/marker"]) == (0, "web\n")
        code, text = run_in(b.sock, tricky,
                            ["sh", "-c", "ls /d; [ -e /bin/ls ] || echo gone; stat -c %h /d/c"])
        assert code == 0 and text.split() == ["c", "h", "s", "gone", "2"], text
        saved = subprocess.run(["docker", "-H", f"unix://{b.sock}", "save", tricky, worker],
                               capture_output=True, timeout=120)
        assert saved.returncode == 0, saved.stderr[-500:]
    finally:
        b.cleanup()


def test_copy_refuses_a_changed_source_file_and_the_same_root(
    engine_a: EngineA, tmp_path: Path
) -> None:
    worker = engine_a.image_refs()[1]
    sel = select(data_root=engine_a.data_root, refs=[worker])
    chain = sel.images[0].layers[-1]  # RUN echo worker > /marker
    marker = sel.diff_dir(chain) / "marker"
    original = marker.read_bytes()
    target = tmp_path / "empty-root"
    target.mkdir()
    try:
        marker.write_bytes(b"X" + original[1:])
        done = _copy(engine_a, target, worker)
        assert done.returncode == 2
        err = " ".join(done.stderr.split())
        assert chain in err and "marker" in err and "/worker:v1" in err, err
        assert "nothing was written" in err
        assert snapshot(target) == {}
    finally:
        marker.write_bytes(original)
    with pytest.raises(PreloadError, match="both"):
        inject(options=InjectOptions(data_root=engine_a.data_root,
                                     from_root=engine_a.data_root, refs=(worker,)))


def test_copy_layers_names_the_file_without_crcs_on_the_first_pass(
    engine_a: EngineA, tmp_path: Path
) -> None:
    """copy_layers skips the CRC-64s (the sha256 is the check) and, on a mismatch, reads the
    layer again with them: the error still names the file (here one flipped byte)."""
    from edgefleet.preload.errors import NoProgress
    from edgefleet.preload.layercopy import LayerCopy, copy_layers

    worker = engine_a.image_refs()[1]
    sel = select(data_root=engine_a.data_root, refs=[worker])
    chain = sel.images[0].layers[-2]  # COPY blob /blob (12 MB)
    rec = sel.layers[chain]
    src = tmp_path / "diff"
    subprocess.run(["cp", "-a", str(sel.diff_dir(chain)), str(src)], check=True)
    with (src / "blob").open("r+b") as fh:
        fh.seek(6 << 20)
        byte = fh.read(1)
        fh.seek(6 << 20)
        fh.write(bytes([byte[0] ^ 1]))
    layer = LayerCopy(image=worker, chain_id=chain, diff_id=rec.diff_id, src=src,
                      dst=tmp_path / "copy", tar_split=sel.layerdb(chain) / "tar-split.json.gz",
                      bytes=rec.bytes, entries=rec.files)
    with pytest.raises(PreloadError, match=r"file blob: content differs"):
        copy_layers(layers=[layer], verify=True, progress=NoProgress())
