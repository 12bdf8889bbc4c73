"""Issue 11, finding 4: a crafted preload bundle must not make `preload inject` write outside
the target data root. Each case runs the real `edgefleet preload inject` in a subprocess on a
hand-made bundle and checks that nothing anywhere under the test's directory changed, and that
the error names the bad manifest field."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.preload.conftest import snapshot

CLI = [sys.executable, "-m", "edgefleet", "preload", "inject"]
Crafter = Callable[[dict[str, Any]], None]


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _bundle(base: Path, craft: Crafter) -> Path:
    """A one-image, one-layer bundle (enough for `--no-verify`), then `craft` edits its
    manifest; every directory the crafted ids point at (inside `base`) is made so the bundle
    checks pass and only the id decides where inject writes."""
    bundle = base / "in" / "a" / "b" / "c" / "d" / "e" / "bundle"
    (bundle / "layers").mkdir(parents=True)
    (bundle / "images").mkdir()
    diff_id = _sha(b"layer")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest: dict[str, Any] = {
        "format": "edgefleet-preload/1", "source": "/x", "verified": True,
        "images": [{"id": _sha(config), "asked_as": "evil:v1",
                    "refs": {"evil:v1": "evil"}, "layers": [diff_id]}],
        "layers": {diff_id: {"chain_id": diff_id, "diff_id": diff_id, "parent": None,
                             "cache_id": "a" * 64, "size": 6, "bytes": 6, "files": 1}}}
    craft(manifest)
    for chain in manifest["layers"]:
        layer = Path(os.path.normpath(bundle / "layers" / chain.removeprefix("sha256:")))
        (layer / "diff").mkdir(parents=True, exist_ok=True)
        (layer / "diff" / "hello").write_text("hello\n")
        (layer / "layerdb").mkdir(exist_ok=True)
        (layer / "layerdb" / "diff").write_text(diff_id)
        (layer / "layerdb" / "size").write_text("6")
    for img in manifest["images"]:
        where = Path(os.path.normpath(bundle / "images" / img["id"].removeprefix("sha256:")))
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_bytes(config)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def _cache_id(m: dict[str, Any]) -> None:
    next(iter(m["layers"].values()))["cache_id"] = "../../../x"


def _chain_id(m: dict[str, Any]) -> None:
    evil = "sha256:" + "../" * 7 + "escaped-chain"
    rec = m["layers"].pop(next(iter(m["layers"])))
    m["layers"][evil] = {**rec, "chain_id": evil}
    m["images"][0]["layers"] = [evil]


def _image_id(m: dict[str, Any]) -> None:
    m["images"][0]["id"] = "sha256:" + "../" * 7 + "escaped-image"


def _parent(m: dict[str, Any]) -> None:
    next(iter(m["layers"].values()))["parent"] = "sha256:../../../../../etc"


CASES: dict[str, tuple[Crafter, str, bool]] = {
    "cache_id": (_cache_id, "cache_id", True),
    "cache_id-no-verify": (_cache_id, "cache_id", False),
    "chain_id": (_chain_id, "chain_id", False),
    "image_id": (_image_id, "images[0].id", False),
    "parent": (_parent, "parent", False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_crafted_bundle_writes_nothing_outside_the_target(tmp_path: Path, case: str) -> None:
    craft, field, verify = CASES[case]
    bundle = _bundle(tmp_path, craft)
    target = tmp_path / "part" / "sub" / "docker"
    target.parent.mkdir(parents=True)
    before = snapshot(tmp_path)
    done = subprocess.run([*CLI, "--data-root", str(target), "--from", str(bundle),
                           *([] if verify else ["--no-verify"])],
                          capture_output=True, text=True, timeout=60)
    after = snapshot(tmp_path)
    outside = sorted(p for p in set(after) ^ set(before)
                     if not p.startswith("part/sub/docker"))
    assert outside == [], f"written outside the target: {outside}\n{done.stderr}"
    assert after == before, "a refused bundle must leave the target untouched too"
    assert done.returncode == 2, done.stdout + done.stderr
    err = " ".join(done.stderr.split())
    assert "not a valid preload manifest" in err and field in err, err


@pytest.mark.parametrize("names", [("..",), ("overlay2", "../x"), ("a/b",), ("",), (".",),
                                   ("overlay2", "l", "x\x00y"), ("link", "escape")])
def test_inside_refuses_every_way_out_of_the_root(tmp_path: Path, names: tuple[str, ...]
                                                   ) -> None:
    from edgefleet.engine.rootwrite import inside
    from edgefleet.engine.storage import StorageError

    root = tmp_path / "docker"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)  # a symlink inside the root that leads out of it
    with pytest.raises(StorageError, match="refusing"):
        inside(root, *names)
    assert inside(root, "overlay2", "a" * 64) == root / "overlay2" / ("a" * 64)
