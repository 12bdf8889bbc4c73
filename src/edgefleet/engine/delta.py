"""Image deltas: what turns image A (which a device has) into image B (which it wants).

A delta file is:

    b"EFDELTA1\\n"  4-byte big-endian header length  header (JSON)  frames

The header holds the source and destination image ids, B's config (base64; it hashes to B's
id) and, for each of B's layers bottom first, either `{"diffId", "kind": "reuse"}` (A has a
layer with that diffId: nothing is sent) or `{"diffId", "kind": "zstd", "ref": [diffIds of A],
"size", "length"}`: one zstd frame of `length` bytes holding the layer's tar stream (`size`
bytes), compressed with A's layers `ref` (their tar streams, concatenated in that order) as a
raw-content dictionary and long-distance matching, so unchanged runs of bytes cost a few
bytes each. Frames follow the header in layer order.

The encoder runs where both images' layer streams are (the server, from its registry); the
decoder where A's are (a device rebuilds them from its data root with engine/tarsplit.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from edgefleet.engine.delta_tar import Op, check_ops, literal_size, tar_plan

if TYPE_CHECKING:
    import pyzstd

MAGIC = b"EFDELTA1\n"
MAX_HEADER = 16 << 20
MAX_WINDOW_LOG = 31
LEVEL = 3
"""zstd level: with long-distance matching against the reference, the level matters little
for bytes and a lot for time (measured by bench/delta.py)."""
_CHUNK = 1 << 20
class DeltaError(ValueError):
    """A delta that is malformed, does not fit the source image, or does not produce B."""


@dataclass(frozen=True)
class LayerPlan:
    diff_id: str
    kind: str
    ref: tuple[str, ...] = ()
    size: int = 0
    length: int = 0
    ops: tuple[Op, ...] = ()
    """kind "tar": the layer told as literal bytes and old files (engine/delta_tar.py)."""


@dataclass(frozen=True)
class Header:
    src: str
    dest: str
    config: bytes
    layers: tuple[LayerPlan, ...]
    manifest: bytes = b""
    """B's registry manifest as the registry serves it (it hashes to the digest of B's ref and
    names B's config): lets a device check the delta's result is the image its release names."""

    def to_json(self) -> bytes:
        return json.dumps({"version": 1, "src": self.src, "dest": self.dest,
                           "config": base64.b64encode(self.config).decode(),
                           "manifest": base64.b64encode(self.manifest).decode(),
                           "layers": [{"diffId": p.diff_id, "kind": p.kind, "ref": list(p.ref),
                                       "size": p.size, "length": p.length,
                                       **({"ops": [list(o) for o in p.ops]} if p.ops else {})}
                                      for p in self.layers]}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Header:
        try:
            doc: dict[str, Any] = json.loads(raw)
            layers = tuple(LayerPlan(diff_id=str(x["diffId"]), kind=str(x["kind"]),
                                     ref=tuple(str(r) for r in x.get("ref") or ()),
                                     size=int(x.get("size") or 0),
                                     length=int(x.get("length") or 0),
                                     ops=tuple((str(o[0]), str(o[1]), str(o[2]), int(o[3]))
                                               for o in x.get("ops") or ()))
                           for x in doc["layers"])
            header = cls(src=str(doc["src"]), dest=str(doc["dest"]),
                         config=base64.b64decode(doc["config"], validate=True), layers=layers,
                         manifest=base64.b64decode(doc.get("manifest") or "", validate=True))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise DeltaError(f"the delta's header is not valid: {exc}") from None
        header.check()
        return header

    def check(self) -> None:
        """The config hashes to `dest` and lists exactly these layers; kinds are known."""
        if "sha256:" + hashlib.sha256(self.config).hexdigest() != self.dest:
            raise DeltaError(f"the delta's image config does not hash to {self.dest}")
        try:
            diff_ids = json.loads(self.config)["rootfs"]["diff_ids"]
        except (ValueError, KeyError, TypeError):
            raise DeltaError("the delta's image config has no rootfs.diff_ids") from None
        if diff_ids != [p.diff_id for p in self.layers]:
            raise DeltaError("the delta's layers differ from its image config's diff_ids")
        for p in self.layers:
            if p.kind not in ("reuse", "zstd", "tar") or p.size < 0 or p.length < 0:
                raise DeltaError(f"layer {p.diff_id}: unknown kind {p.kind!r} or bad sizes")
            why = check_ops(p.ops, p.size) if p.kind == "tar" else ""
            if why:
                raise DeltaError(f"layer {p.diff_id}: {why}")


def check_manifest(header: Header, ref: str) -> None:
    """Raise DeltaError unless the delta's result is the image `ref` names: when `ref` is
    `name@sha256:<digest>`, the header's manifest must hash to that digest and name the
    delta's image config (its id) as its config."""
    if "@sha256:" not in ref:
        return
    digest = "sha256:" + ref.rsplit("@sha256:", 1)[1]
    if not header.manifest:
        raise DeltaError(f"the delta carries no manifest to check against {digest}")
    got = "sha256:" + hashlib.sha256(header.manifest).hexdigest()
    if got != digest:
        raise DeltaError(f"the delta's manifest hashes to {got}, the release names {digest}")
    try:
        config = str(json.loads(header.manifest)["config"]["digest"])
    except (ValueError, KeyError, TypeError):
        raise DeltaError(f"the manifest {digest} names no image config (an index?)") from None
    if config != header.dest:
        raise DeltaError(f"the delta makes image {header.dest}, but {ref} is image {config}")


def diff_ids_of(config: bytes) -> list[str]:
    return list(json.loads(config)["rootfs"]["diff_ids"])


def window_log(total: int) -> int:
    return max(20, min(MAX_WINDOW_LOG, math.ceil(math.log2(max(total, 2)))))


def _prefix(ref: bytes) -> tuple[pyzstd.ZstdDict, int] | None:
    """A's layers as a raw-content reference prefix (zstd's --patch-from). pyzstd is
    imported here: a supervisor that never applies a delta does not load it."""
    import pyzstd

    return pyzstd.ZstdDict(ref, is_raw=True).as_prefix if ref else None


def compress(ref: bytes, data: bytes) -> bytes:
    """One zstd frame of `data` against the reference `ref`."""
    import pyzstd

    option: dict[int, int] = {pyzstd.CParameter.compressionLevel: LEVEL,
              pyzstd.CParameter.windowLog: window_log(len(ref) + len(data)),
              pyzstd.CParameter.enableLongDistanceMatching: 1}
    return pyzstd.compress(data, option, zstd_dict=_prefix(ref))


def encode(*, src_id: str, src_config: bytes, dest_config: bytes,
           src_stream: Callable[[str], bytes], dest_stream: Callable[[str], bytes],
           out: IO[bytes], progress: Callable[[int, int], None] | None = None,
           dest_manifest: bytes = b"") -> Header:
    """Write the delta from A (src) to B (dest) into `out`. `src_stream`/`dest_stream` give a
    layer's tar stream by diffId; `dest_manifest` is B's manifest (see `Header.manifest`).
    Returns the header written."""
    dest_id = "sha256:" + hashlib.sha256(dest_config).hexdigest()
    src_ids, dest_ids = diff_ids_of(src_config), diff_ids_of(dest_config)
    have = set(src_ids)
    refs: dict[tuple[str, ...], bytes] = {}
    streams: dict[str, bytes] = {}

    def old(diff_id: str) -> bytes:
        if diff_id not in streams:
            streams[diff_id] = src_stream(diff_id)
        return streams[diff_id]

    frames: list[bytes] = []
    plans: list[LayerPlan] = []
    for n, diff_id in enumerate(dest_ids):
        if diff_id in have:
            plans.append(LayerPlan(diff_id=diff_id, kind="reuse"))
            continue
        data = dest_stream(diff_id)
        if "sha256:" + hashlib.sha256(data).hexdigest() != diff_id:
            raise DeltaError(f"layer {diff_id} of {dest_id} does not hash to its diffId")
        ref_ids = reference_ids(src_ids, dest_ids, n)
        told = tar_plan(data, {d: old(d) for d in ref_ids})
        if told is not None:  # mostly old files: literal bytes and file copies
            frame = compress(told[2], told[1])
            plan = LayerPlan(diff_id=diff_id, kind="tar", size=len(data), length=len(frame),
                             ops=tuple(told[0]))
        else:
            if ref_ids not in refs:
                refs[ref_ids] = b"".join(old(d) for d in ref_ids)
            frame = compress(refs[ref_ids], data)
            plan = LayerPlan(diff_id=diff_id, kind="zstd", ref=ref_ids, size=len(data),
                             length=len(frame))
        frames.append(frame)
        plans.append(plan)
        if progress is not None:
            progress(n + 1, len(dest_ids))
    header = Header(src=src_id, dest=dest_id, config=dest_config, layers=tuple(plans),
                    manifest=dest_manifest)
    raw = header.to_json()
    out.write(MAGIC + len(raw).to_bytes(4, "big") + raw)
    for frame in frames:
        out.write(frame)
    return header


def reference_ids(src_ids: list[str], dest_ids: list[str], n: int) -> tuple[str, ...]:
    """The source layers B's new layer `n` is encoded against: A's layer at the same place
    when both images have as many layers and that one changed (a rebuilt layer is most like
    the one it replaces; a device then rebuilds each reference apart and decodes the first
    new layer while it rebuilds the next one's), else every layer of A that B lacks (all of
    A's when none)."""
    changed = tuple(d for d in src_ids if d not in set(dest_ids)) or tuple(src_ids)
    if len(src_ids) == len(dest_ids) and src_ids[n] in changed:
        return (src_ids[n],)
    return changed


def read_header(fh: IO[bytes]) -> Header:
    """The header of a delta file (positioned at its first frame afterwards)."""
    magic = fh.read(len(MAGIC))
    if magic != MAGIC:
        raise DeltaError("not an edgefleet delta (bad magic)")
    size = int.from_bytes(fh.read(4), "big")
    if not 0 < size <= MAX_HEADER:
        raise DeltaError(f"the delta's header length {size} is out of range")
    raw = fh.read(size)
    if len(raw) != size:
        raise DeltaError("the delta ends inside its header")
    return Header.from_json(raw)


def prefix_of(ref: bytes) -> object:
    """The zstd prefix of a reference, to share between the layers decoded against it."""
    return _prefix(ref)


def decompress_layer(*, plan: LayerPlan, prefix: object, fh: IO[bytes]) -> Iterator[bytes]:
    """The layer's tar stream, in chunks, from its frame (the next `plan.length` bytes of
    `fh`) and the reference prefix (`prefix_of(A's layers plan.ref, concatenated)`), NOT
    hashed: the caller checks the diffId (see `decode_layer`). Raises DeltaError when the frame
    is damaged or does not hold exactly `plan.size` bytes."""
    import pyzstd

    dctx = pyzstd.ZstdDecompressor(zstd_dict=prefix,  # type: ignore[arg-type]
                                   option={pyzstd.DParameter.windowLogMax: MAX_WINDOW_LOG})
    total = 0
    left = plan.length
    try:
        while not dctx.eof:
            if dctx.needs_input:
                data = fh.read(min(left, _CHUNK))
                if not data:
                    raise DeltaError(f"layer {plan.diff_id}: the delta ends inside its frame")
                left -= len(data)
            else:
                data = b""
            chunk = dctx.decompress(data, _CHUNK)
            total += len(chunk)
            if total > plan.size:
                raise DeltaError(f"layer {plan.diff_id}: the delta holds more than "
                                 f"{plan.size} bytes")
            if chunk:
                yield chunk
    except pyzstd.ZstdError as exc:
        raise DeltaError(f"layer {plan.diff_id}: the delta's frame is damaged ({exc})") from None
    if left or dctx.unused_data:
        raise DeltaError(f"layer {plan.diff_id}: its frame is longer than recorded")
    if total != plan.size:
        raise DeltaError(f"layer {plan.diff_id}: the delta holds {total} bytes, not "
                         f"{plan.size}")


def literal_bytes(*, plan: LayerPlan, fh: IO[bytes], ref: bytes) -> bytes:
    """The literal bytes of a "tar" plan, from its frame (the next `plan.length` bytes of
    `fh`) and its reference (the old files its "ref" ops name, concatenated); raises
    DeltaError unless they are exactly what its ops take."""
    import pyzstd

    want = literal_size(plan.ops)
    frame = fh.read(plan.length)
    if len(frame) != plan.length:
        raise DeltaError(f"layer {plan.diff_id}: the delta ends inside its frame")
    dctx = pyzstd.ZstdDecompressor(zstd_dict=_prefix(ref),
                                   option={pyzstd.DParameter.windowLogMax: MAX_WINDOW_LOG})
    try:
        data = dctx.decompress(frame, max_length=want + 1)
    except pyzstd.ZstdError as exc:
        raise DeltaError(f"layer {plan.diff_id}: the delta's frame is damaged ({exc})") from None
    if len(data) != want or not dctx.eof or dctx.unused_data:
        raise DeltaError(f"layer {plan.diff_id}: its frame does not hold its {want} literal "
                         "bytes")
    return data


def check_layer(plan: LayerPlan, sha: Any, total: int) -> None:
    """Raise DeltaError unless the stream hashed into `sha` is the layer's (its diffId)."""
    got = "sha256:" + sha.hexdigest()
    if total != plan.size or got != plan.diff_id:
        raise DeltaError(f"layer {plan.diff_id}: the rebuilt stream hashes to {got} "
                         f"({total} bytes), not to its diffId")


def decode_layer(*, plan: LayerPlan, ref: bytes, fh: IO[bytes]) -> Iterator[bytes]:
    """The layer's tar stream, in chunks, from its frame (the next `plan.length` bytes of
    `fh`) and the reference (A's layers `plan.ref`, concatenated). Raises DeltaError when the
    frame is damaged or the stream does not hash to the layer's diffId (after the last chunk:
    callers keep what they wrote out of the engine until this generator ends)."""
    sha = hashlib.sha256()
    total = 0
    for chunk in decompress_layer(plan=plan, prefix=_prefix(ref), fh=fh):
        sha.update(chunk)
        total += len(chunk)
        yield chunk
    check_layer(plan, sha, total)
