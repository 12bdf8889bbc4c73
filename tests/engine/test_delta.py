"""The delta codec (engine/delta.py) on real tar streams: reused layers cost nothing, a changed
file inside a big layer costs about that file, a rebuild with new timestamps costs almost
nothing; a damaged frame, a wrong source or a config that does not hash to its id is refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from edgefleet.engine.delta import DeltaError, decode_layer, encode, read_header

KB = 1024


def _tar(files: list[tuple[str, bytes]], mtime: int = 1000) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _config(layers: list[bytes]) -> bytes:
    return json.dumps({"rootfs": {"type": "layers",
                                  "diff_ids": [_id(x) for x in layers]}}).encode()


BASE = _tar([("bin/tool", os.urandom(300 * KB))])
FILES = [(f"app/f{i}.bin", os.urandom(200 * KB)) for i in range(20)]
APP = _tar(FILES)


def _delta(src: list[bytes], dest: list[bytes]) -> tuple[bytes, dict[str, bytes]]:
    streams = {_id(x): x for x in src + dest}
    out = io.BytesIO()
    encode(src_id=_id(_config(src)), src_config=_config(src), dest_config=_config(dest),
           src_stream=streams.__getitem__, dest_stream=streams.__getitem__, out=out)
    return out.getvalue(), streams


def _apply(delta: bytes, streams: dict[str, bytes]) -> list[bytes]:
    fh = io.BytesIO(delta)
    header = read_header(fh)
    got = []
    for plan in header.layers:
        if plan.kind == "reuse":
            got.append(streams[plan.diff_id])
        else:
            ref = b"".join(streams[d] for d in plan.ref)
            got.append(b"".join(decode_layer(plan=plan, ref=ref, fh=fh)))
    return got


def test_one_changed_file_costs_about_that_file_and_the_base_is_only_referenced() -> None:
    changed = list(FILES)
    changed[7] = ("app/f7.bin", FILES[7][1][:1000] + b"x" + FILES[7][1][1001:])
    new_app = _tar(changed)
    delta, streams = _delta([BASE, APP], [BASE, new_app])
    header = read_header(io.BytesIO(delta))
    assert [p.kind for p in header.layers] == ["reuse", "zstd"]
    assert len(delta) < 8 * KB < len(new_app) // 500
    assert _apply(delta, streams) == [BASE, new_app]


def test_a_rebuild_with_new_timestamps_costs_almost_nothing() -> None:
    rebuilt = _tar(FILES, mtime=2000)
    assert _id(rebuilt) != _id(APP)
    delta, streams = _delta([BASE, APP], [BASE, rebuilt])
    assert len(delta) < 8 * KB
    assert _apply(delta, streams) == [BASE, rebuilt]


def test_a_damaged_frame_is_refused() -> None:
    changed = _tar([*FILES[:3], ("app/new.txt", os.urandom(50 * KB))])
    delta, streams = _delta([BASE, APP], [BASE, changed])
    broken = bytearray(delta)
    broken[-2000] ^= 0xFF
    with pytest.raises(DeltaError, match=r"damaged|hashes to"):
        _apply(bytes(broken), streams)


def test_a_header_whose_config_does_not_hash_to_its_id_is_refused() -> None:
    delta, _ = _delta([BASE, APP], [BASE, _tar(FILES[:2])])
    forged = delta.replace(b'"dest": "sha256:', b'"dest": "sha256:0', 1)
    forged = forged[:9] + (int.from_bytes(forged[9:13], "big") + 1).to_bytes(4, "big") \
        + forged[13:]
    with pytest.raises(DeltaError, match="does not hash"):
        read_header(io.BytesIO(forged))


def test_each_rebuilt_layer_refers_to_the_layer_it_replaces_only() -> None:
    """Two layers rebuilt (new timestamps): each frame's reference is the source layer in the
    same place, so a device rebuilds the references apart (the first layer decodes while the
    second reference is rebuilt); with another layer count, every changed layer is the
    reference."""
    lib = [("deps/lib.so", os.urandom(300 * KB))]
    deps, new_deps = _tar(lib), _tar(lib, mtime=5000)
    new_app = _tar(FILES, mtime=5000)
    delta, streams = _delta([BASE, deps, APP], [BASE, new_deps, new_app])
    header = read_header(io.BytesIO(delta))
    assert [p.ref for p in header.layers] == [(), (_id(deps),), (_id(APP),)]
    assert len(delta) < 8 * KB
    assert _apply(delta, streams) == [BASE, new_deps, new_app]
    delta, streams = _delta([BASE, deps, APP], [BASE, new_app])
    assert [p.ref for p in read_header(io.BytesIO(delta)).layers][1] == (_id(deps), _id(APP))
    assert _apply(delta, streams) == [BASE, new_app]
