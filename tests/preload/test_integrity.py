"""One flipped byte in one file of one layer makes extract and inject fail, naming the image,
the layer and the file, before anything is written."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edgefleet.preload.bundle import Manifest, config_path, layer_dir
from edgefleet.preload.errors import PreloadError
from edgefleet.preload.extract import extract
from edgefleet.preload.inject import InjectOptions, inject
from tests.preload.conftest import EngineA, snapshot

pytestmark = pytest.mark.engine
CLI = [sys.executable, "-m", "edgefleet"]


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def _layer_with(manifest: Manifest, image_suffix: str, index: int) -> str:
    img = next(i for i in manifest.images if i.asked_as.endswith(image_suffix)
               or any(r.endswith(image_suffix) for r in i.refs))
    return img.layers[index]


def test_extract_fails_naming_image_layer_and_file_and_writes_nothing(
    engine_a: EngineA, bundle: tuple[Path, Manifest], tmp_path: Path
) -> None:
    _, manifest = bundle
    chain = _layer_with(manifest, "/worker:v1", -1)   # RUN echo worker > /marker
    marker = engine_a.data_root / "overlay2" / manifest.layers[chain].cache_id / "diff" / "marker"
    _flip(marker, 0)
    try:
        out = tmp_path / "out"
        done = subprocess.run([*CLI, "preload", "extract", "--data-root",
                               str(engine_a.data_root), "--out", str(out),
                               *engine_a.image_refs()], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2
        err = " ".join(done.stderr.split())
        assert chain in err and "marker" in err and "/worker:v1" in err, err
        assert "nothing was written" in err
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir()] == []
        # --no-verify skips the check (and says so in the manifest)
        unverified = extract(data_root=engine_a.data_root, out=out,
                             refs=engine_a.image_refs()[1:2], verify=False)
        assert unverified.verified is False
    finally:
        _flip(marker, 0)


def test_inject_fails_naming_the_layer_and_leaves_the_target_untouched(
    bundle: tuple[Path, Manifest], tmp_path: Path, copy_of: Callable[[Path], Path]
) -> None:
    out, manifest = bundle
    broken = copy_of(out)
    chain = _layer_with(manifest, "/worker:v1", -2)   # COPY blob /blob (12 MB)
    _flip(layer_dir(bundle=broken, chain_id=chain) / "diff" / "blob", 5_000_000)
    target = tmp_path / "empty-root"
    target.mkdir()
    with pytest.raises(PreloadError) as err:
        inject(options=InjectOptions(data_root=target, bundle=broken))
    assert chain in str(err.value) and "file blob" in str(err.value)
    assert snapshot(target) == {}
    missing = tmp_path / "not-yet"
    done = subprocess.run([*CLI, "preload", "inject", "--data-root", str(missing), "--from",
                           str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and chain in " ".join(done.stderr.split())
    assert not missing.exists()


def test_inject_refuses_a_config_that_does_not_match_its_id(
    bundle: tuple[Path, Manifest], tmp_path: Path, copy_of: Callable[[Path], Path]
) -> None:
    out, manifest = bundle
    broken = copy_of(out)
    cfg = config_path(bundle=broken, image_id=manifest.images[0].id)
    cfg.write_bytes(cfg.read_bytes().replace(b'"os":"linux"', b'"os":"Linux"'))
    with pytest.raises(PreloadError, match="config does not hash to"):
        inject(options=InjectOptions(data_root=tmp_path / "docker", bundle=broken))
    assert not (tmp_path / "docker").exists()
