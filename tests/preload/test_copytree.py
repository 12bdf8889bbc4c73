"""copy_tree with a tar-split copies a layer exactly while recomputing its diffId, reading each
byte once (each file is copied by the kernel right after it is checked); a changed file fails
the copy, naming the file."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from edgefleet.engine.tarsplit import LayerMismatch
from edgefleet.preload.copytree import copy_tree
from tests.engine.test_tarsplit import _split


@pytest.fixture
def layer(tmp_path: Path) -> tuple[Path, Path, str]:
    """A diff dir with a big file, a hard link, an empty file, a symlink and a subdir, its
    tar-split and the tar's sha256."""
    diff = tmp_path / "diff"
    (diff / "etc" / "sub").mkdir(parents=True)
    (diff / "etc" / "big").write_bytes(os.urandom(3 * 2**20 + 17))
    os.link(diff / "etc" / "big", diff / "etc" / "same")
    (diff / "empty").write_bytes(b"")
    (diff / "etc" / "sub" / "small").write_bytes(b"small\n")
    os.chmod(diff / "etc" / "sub" / "small", 0o751)
    os.symlink("etc/big", diff / "ln")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for rel in ("etc", "etc/big", "etc/same", "etc/sub", "etc/sub/small", "empty", "ln"):
            tf.add(diff / rel, arcname=rel, recursive=False)
    tar = buf.getvalue()
    split = tmp_path / "tar-split.json.gz"
    _split(tar, split)
    return split, diff, "sha256:" + hashlib.sha256(tar).hexdigest()


def _tree(root: Path) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = os.readlink(path).encode() if path.is_symlink() else \
            path.read_bytes() if path.is_file() else b""
        out[str(path.relative_to(root))] = (st.st_mode, data)
    return out


def test_verified_copy_is_exact_and_returns_the_diff_id(
        layer: tuple[Path, Path, str], tmp_path: Path) -> None:
    split, diff, want = layer
    seen: list[int] = []
    got = copy_tree(src=diff, dst=tmp_path / "copy", advance=seen.append, tar_split=split)
    assert got == want
    assert _tree(tmp_path / "copy") == _tree(diff)
    copy = tmp_path / "copy" / "etc"
    assert (copy / "big").stat().st_ino == (copy / "same").stat().st_ino   # still a hard link
    assert (copy / "big").stat().st_nlink == 2
    assert sum(seen) == 3 * 2**20 + 17 + 6   # each byte read once (the link carries none)
    assert copy_tree(src=diff, dst=tmp_path / "plain", advance=seen.append) is None
    assert _tree(tmp_path / "plain") == _tree(diff)


def test_a_changed_file_fails_the_verified_copy(
        layer: tuple[Path, Path, str], tmp_path: Path) -> None:
    split, diff, _ = layer
    with (diff / "etc" / "big").open("r+b") as fh:
        fh.seek(2**20 + 5)
        byte = fh.read(1)
        fh.seek(2**20 + 5)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(LayerMismatch, match=r"etc/big: content differs"):
        copy_tree(src=diff, dst=tmp_path / "copy", advance=lambda n: None, tar_split=split)
    # without the CRC-64s (what copy_layers runs), only the layer's sha256 shows it; the
    # caller's second pass with them names the file
    got = copy_tree(src=diff, dst=tmp_path / "fast", advance=lambda n: None, tar_split=split,
                    crc=False)
    assert got is not None and got != layer[2]
