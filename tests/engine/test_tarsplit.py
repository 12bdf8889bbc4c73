"""tar-split reassembly: a stream split the way tar-split does it hashes back to the tar's
sha256; a changed, missing or resized file is named."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import anycrc
import pytest

from edgefleet.engine.tarsplit import LayerMismatch, entries, layer_digest


def _crc(data: bytes) -> bytes:
    return int(anycrc.Model("CRC64-GO-ISO").calc(data)).to_bytes(8, "big")


def _split(tar: bytes, out: Path) -> None:
    """Write a tar-split.json.gz for `tar` (segments between file payloads)."""
    lines: list[dict[str, object]] = []
    pos = 0
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        for m in tf.getmembers():
            lines.append({"type": 2, "payload": base64.b64encode(tar[pos:m.offset_data]).decode()})
            data = tar[m.offset_data:m.offset_data + m.size] if m.isfile() else b""
            name: dict[str, object] = {"name": m.name}
            if m.name.startswith("raw"):
                name = {"name_raw": base64.b64encode(m.name.encode()).decode()}
            lines.append({"type": 1, **name, "size": len(data),
                          "payload": base64.b64encode(_crc(data)).decode() if data else None})
            pos = m.offset_data + len(data)
    lines.append({"type": 2, "payload": base64.b64encode(tar[pos:]).decode()})
    with gzip.open(out, "wt") as fh:
        for i, line in enumerate(lines):
            fh.write(json.dumps({**line, "position": i}) + "\n")


@pytest.fixture
def layer(tmp_path: Path) -> tuple[Path, Path, str]:
    diff = tmp_path / "diff"
    (diff / "etc").mkdir(parents=True)
    (diff / "etc" / "hello").write_bytes(b"hello world\n" * 1000)
    (diff / "rawname").write_bytes(b"x" * 5)
    (diff / "empty").write_bytes(b"")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for rel in ("etc", "etc/hello", "rawname", "empty"):
            tf.add(diff / rel, arcname=rel, recursive=False)
        info = tarfile.TarInfo("etc/.wh.gone")   # a whiteout: no content, nothing to read
        tf.addfile(info)
        link = tarfile.TarInfo("etc/link")
        link.type = tarfile.LNKTYPE
        link.linkname = "etc/hello"
        tf.addfile(link)
    tar = buf.getvalue()
    split = tmp_path / "tar-split.json.gz"
    _split(tar, split)
    return split, diff, "sha256:" + hashlib.sha256(tar).hexdigest()


def test_reassembled_stream_hashes_to_the_tar(layer: tuple[Path, Path, str]) -> None:
    split, diff, want = layer
    seen: list[int] = []
    assert layer_digest(tar_split=split, diff_dir=diff, progress=seen.append) == want
    assert sum(seen) == 12005
    assert any(e.name == b"rawname" for e in entries(split))


def test_changed_missing_or_resized_files_are_named(layer: tuple[Path, Path, str]) -> None:
    split, diff, _ = layer
    hello = diff / "etc" / "hello"
    original = hello.read_bytes()
    hello.write_bytes(original[:-1] + b"?")
    with pytest.raises(LayerMismatch, match=r"etc/hello: content differs .*CRC-64"):
        layer_digest(tar_split=split, diff_dir=diff)
    hello.write_bytes(original + b"more")
    with pytest.raises(LayerMismatch, match="etc/hello: size 12004, recorded 12000"):
        layer_digest(tar_split=split, diff_dir=diff)
    hello.unlink()
    with pytest.raises(LayerMismatch, match="etc/hello: cannot read"):
        layer_digest(tar_split=split, diff_dir=diff)


def test_unreadable_tar_split_is_a_mismatch(tmp_path: Path) -> None:
    bad = tmp_path / "tar-split.json.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(LayerMismatch, match="cannot read"):
        layer_digest(tar_split=bad, diff_dir=tmp_path)
