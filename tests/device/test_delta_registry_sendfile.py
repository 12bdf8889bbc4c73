"""The delta's loopback registry (device/delta_registry.py) sends large old files with
sendfile (`FileSlice`s) and everything else from Python: what a client receives must be the
exact stream, byte for byte (checked by its sha256), whatever the mix of bytes and slices; and
a blob whose producer finds it wrong is still cut short before its last bytes. No engine:
httpx is the client here (tests/device/test_delta_checks.py has the engine pull them)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from edgefleet.device.delta_blobs import OK, Blob, Pipe
from edgefleet.device.delta_layers import FileSlice
from edgefleet.device.delta_registry import LocalRegistry
from edgefleet.engine.delta import DeltaError
from tests.device.test_delta_checks import counting_sendfile

MB = 1 << 20


def _parts(tmp_path: Path) -> list[bytes | tuple[Path, int, int]]:
    """Bytes, and (file, offset, count) slices: large, small, at an offset, back to back."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * MB + 123))
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(70_000))
    return [b"header" * 100, (big, 0, 3 * MB + 123), (small, 0, 70_000),
            (big, 1000, MB), b"\0" * 1024, (small, 5, 10), os.urandom(2 * MB), b"end" * 341]


def _blob(parts: list[bytes | tuple[Path, int, int]], *, fail: bool = False) -> Blob:
    def produce(pipe: Pipe) -> None:
        for part in parts:
            if isinstance(part, bytes):
                item: bytes | FileSlice = part
            else:
                path, offset, count = part
                item = FileSlice(os.open(path, os.O_RDONLY), offset, count)
            if not pipe.put(item):
                return
        pipe.put(DeltaError("rebuilt wrong") if fail else OK)

    return Blob(size=lambda: sum(len(p) if isinstance(p, bytes) else p[2] for p in parts),
                produce=produce)


def _expected(parts: list[bytes | tuple[Path, int, int]]) -> bytes:
    out = b""
    for part in parts:
        if isinstance(part, bytes):
            out += part
        else:
            path, offset, count = part
            out += path.read_bytes()[offset:offset + count]
    return out


async def test_slices_and_bytes_arrive_as_one_exact_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = _parts(tmp_path)
    sent = counting_sendfile(monkeypatch)
    want = _expected(parts)
    digest = "sha256:" + hashlib.sha256(want).hexdigest()
    reg = LocalRegistry(manifest=b"{}", blobs={digest: _blob(parts)})
    base = "http://" + reg.ref.split("/", 1)[0]
    async with reg, httpx.AsyncClient(base_url=base, timeout=30) as http:
        head = await http.head(f"/v2/{reg.name}/blobs/{digest}")
        assert head.headers["content-length"] == str(len(want))
        got = await http.get(f"/v2/{reg.name}/blobs/{digest}")
        assert got.status_code == 200
        assert "sha256:" + hashlib.sha256(got.content).hexdigest() == digest
        assert len(got.content) == len(want)
        again = await http.get(f"/v2/{reg.name}/blobs/{digest}")
        assert again.status_code == 404, "a blob is served once"
    assert reg.failed is None
    slices = sum(p[2] for p in parts if not isinstance(p, bytes))
    assert sum(sent) == slices, "every slice went by sendfile, nothing else did"


async def test_a_blob_found_wrong_is_cut_before_its_last_bytes(tmp_path: Path) -> None:
    parts = _parts(tmp_path)
    want = _expected(parts)
    digest = "sha256:" + hashlib.sha256(want).hexdigest()
    reg = LocalRegistry(manifest=b"{}", blobs={digest: _blob(parts, fail=True)})
    base = "http://" + reg.ref.split("/", 1)[0]
    async with reg, httpx.AsyncClient(base_url=base, timeout=30) as http:
        got = bytearray()
        with pytest.raises(httpx.HTTPError):
            async with http.stream("GET", f"/v2/{reg.name}/blobs/{digest}") as r:
                async for chunk in r.aiter_raw():
                    got += chunk
        assert len(got) < len(want) and want.startswith(bytes(got))
        assert len(want) - len(got) >= len(parts[-1]), "the last part never went"
    assert isinstance(reg.failed, DeltaError) and reg.broken.is_set()
