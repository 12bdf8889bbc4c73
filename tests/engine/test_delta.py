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

from edgefleet.engine.delta import (
    DeltaError,
    decode_layer,
    encode,
    literal_bytes,
    read_header,
    reference_ids,
)
from edgefleet.engine.delta_tar import check_ops

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


def _contents(stream: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar  # type: ignore[union-attr]
                if m.isreg()}


def _apply(delta: bytes, streams: dict[str, bytes]) -> list[bytes]:
    """Each layer of the delta's image, decoded (a device's decoding, with the old layers'
    files taken from their streams)."""
    fh = io.BytesIO(delta)
    header = read_header(fh)
    got = []
    for plan in header.layers:
        if plan.kind == "reuse":
            got.append(streams[plan.diff_id])
        elif plan.kind == "tar":
            files = {(d, name): data for d in {o[1] for o in plan.ops if o[1]}
                     for name, data in _contents(streams[d]).items()}
            ref = b"".join(files[(d, n)] for k, d, n, _ in plan.ops if k == "ref")
            literal = literal_bytes(plan=plan, fh=fh, ref=ref)
            out, pos = [], 0
            for kind, d, name, size in plan.ops:
                if kind == "data":
                    out.append(literal[pos:pos + size])
                    pos += size
                elif kind == "copy":
                    assert len(files[(d, name)]) == size
                    out.append(files[(d, name)])
            got.append(b"".join(out))
            if _id(got[-1]) != plan.diff_id:  # as a device checks every layer
                raise DeltaError(f"layer {plan.diff_id}: the rebuilt stream hashes to "
                                 f"{_id(got[-1])}")
        else:
            ref = b"".join(streams[d] for d in plan.ref)
            got.append(b"".join(decode_layer(plan=plan, ref=ref, fh=fh)))
    return got


def test_one_changed_file_costs_about_that_file_and_the_base_is_only_referenced() -> None:
    changed = list(FILES)
    flipped = bytes([FILES[7][1][1000] ^ 0xFF])  # (b"x" was the same byte 1 time in 256)
    changed[7] = ("app/f7.bin", FILES[7][1][:1000] + flipped + FILES[7][1][1001:])
    new_app = _tar(changed)
    delta, streams = _delta([BASE, APP], [BASE, new_app])
    header = read_header(io.BytesIO(delta))
    assert [p.kind for p in header.layers] == ["reuse", "tar"]
    assert [o[2] for o in header.layers[1].ops if o[0] == "ref"] == ["app/f7.bin"], \
        "the changed file is encoded against its old version only"
    assert len(delta) < 8 * KB < len(new_app) // 500
    assert _apply(delta, streams) == [BASE, new_app]


def test_a_rebuild_with_new_timestamps_costs_almost_nothing() -> None:
    rebuilt = _tar(FILES, mtime=2000)
    assert _id(rebuilt) != _id(APP)
    delta, streams = _delta([BASE, APP], [BASE, rebuilt])
    plan = read_header(io.BytesIO(delta)).layers[1]
    assert plan.kind == "tar" and {o[0] for o in plan.ops} == {"data", "copy"}, \
        "every file is copied from the old layer, only the headers are sent"
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
    """A zstd frame's reference is the source layer in the same place when both images have as
    many layers (a device rebuilds the references apart: the first layer decodes while the
    second reference is rebuilt); otherwise every changed layer."""
    src, dest = ["b", "d", "a"], ["b", "d2", "a2"]
    assert [reference_ids(src, dest, n) for n in (1, 2)] == [("d",), ("a",)]
    assert reference_ids(src, ["b", "a2"], 1) == ("d", "a")
    assert reference_ids(["b"], ["b", "x"], 1) == ("b",)


def test_a_tar_plan_whose_ops_do_not_add_up_is_refused() -> None:
    """A "tar" plan whose ops do not add up to the layer is refused with its header (a copy of
    a file the device's own tar-split does not list with that size is refused by
    device/delta_apply.OldFiles)."""
    rebuilt = _tar(FILES, mtime=2000)
    delta, _ = _delta([BASE, APP], [BASE, rebuilt])
    header = read_header(io.BytesIO(delta))
    forged = bytearray(delta)
    at = delta.index(b', 204800]')  # the first copy's size
    forged[at:at + 9] = b', 204801]'
    with pytest.raises(DeltaError, match="add up"):
        read_header(io.BytesIO(bytes(forged)))
    assert header.layers[1].kind == "tar"


def test_a_tar_plan_that_would_hold_too_much_in_memory_is_refused() -> None:
    big = 1 << 30
    assert "literal bytes" in check_ops((("data", "", "", big),), big)
    assert "reference" in check_ops((("ref", "sha256:a", "f", 65 << 20),
                                     ("data", "", "", 10)), 10)
    assert check_ops((("data", "", "", 10), ("copy", "sha256:a", "f", big)), big + 10) == ""
