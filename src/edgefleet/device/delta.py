"""Delta updates on the device (issue 19): an engine wrapper whose `pull` first tries a delta
from the image this device already has for the same repository, and falls back to the engine's
normal pull on any failure (the reason logged, the fallback counted in `stats`).

With the `delta` configuration variable on (BALENA_SUPERVISOR_DELTA / RESIN_SUPERVISOR_DELTA,
fleet-wide or per device, as any configuration variable):
1. ask the server (`deltaEndpoint`, else `apiEndpoint`) for the delta src → dest, wait while
   it is made, check the disk has room for it, download it to the data dir;
2. rebuild the source image's layer streams from the engine's data root (engine/tarsplit.py,
   each proven by its diffId), decode every new layer into a file and check its diffId, and
   check the image config hashes to the image id: all before anything reaches the engine;
3. stream an image archive (`docker save` layout) from those files into `POST /images/load`,
   and check the engine now holds the image by that id.

An image loaded this way has no repo digest in the engine, so the wrapper remembers ref → id
(`deltas.json` in the data dir) and adds the ref to that image's digests in `observe`, so the
planner finds it as it would a pulled one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tarfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from edgefleet.device.logs import LogSink
from edgefleet.engine.delta import DeltaError, Header, decode_layer, read_header
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.storage import DataRoot
from edgefleet.model.engine_events import PullProgress
from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import ServiceSpec

DELTA_VARS = ("BALENA_SUPERVISOR_DELTA", "RESIN_SUPERVISOR_DELTA", "SUPERVISOR_DELTA")
WAIT_S = 600.0
"""How long to wait for the server to make a delta before pulling instead."""
_CHUNK = 1 << 20
_ON = ("1", "true", "on", "yes")


@dataclass(frozen=True)
class DeltaSettings:
    endpoint: str
    api_key: str


def delta_enabled(config: dict[str, str]) -> bool:
    return any(config.get(name, "").strip().lower() in _ON for name in DELTA_VARS)


class DeltaEngine(DockerEngine):
    """The Docker engine adapter, whose pulls go through deltas when `settings()` says so."""

    def __init__(self, *, socket: str, scope: str, data_dir: Path, log: LogSink) -> None:
        super().__init__(socket=socket, scope=scope)
        self.dir = data_dir / "deltas"
        self.log = log
        self.settings: Callable[[], DeltaSettings | None] = lambda: None
        self.stats: dict[str, Any] = {"applied": 0, "fallbacks": 0, "bytes": 0,
                                      "last_fallback": ""}
        self._loaded: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            self._loaded = dict(json.loads((data_dir / "deltas.json").read_text()))
        self._state = data_dir / "deltas.json"
        self._seen: tuple[object, EngineState] | None = None

    async def observe(self) -> EngineState:
        state = await super().observe()
        if not self._loaded:
            return state
        if self._seen is not None and self._seen[0] is state.images:
            return state.model_copy(update={"images": self._seen[1].images})
        by_id: dict[str, list[str]] = {}
        for ref, image_id in self._loaded.items():
            by_id.setdefault(image_id, []).append(ref)
        images = tuple(i.model_copy(update={"repo_digests": (*i.repo_digests, *by_id[i.id])})
                       if i.id in by_id else i for i in state.images)
        out = state.model_copy(update={"images": images})
        self._seen = (state.images, out)
        return out

    async def create_container(self, spec: ServiceSpec, *,
                               network_from: str | None = None) -> str:
        """The engine knows a delta-loaded image by its id only: create from the id, with the
        labels (config hash) of the service as the target states it."""
        image_id = self._loaded.get(spec.image)
        if image_id is None:
            return await super().create_container(spec, network_from=network_from)
        wanted = spec.config_hash()
        by_id = spec.model_copy(update={"image": image_id})
        by_id._hash = wanted  # the hash of the service as targeted (with its image ref)
        return await super().create_container(by_id, network_from=network_from)

    async def pull(self, image: str, *, auth: dict[str, str] | None = None,
                   progress: Callable[[PullProgress], None] | None = None) -> str:
        settings = self.settings()
        if settings is not None and "@" in image:
            try:
                source = await self._source(image)
                if source is not None:  # else a first install: nothing to make a delta from
                    return await self._via_delta(image, source, settings)
            except Exception as exc:  # any failure: the normal pull, saying why
                self.stats["fallbacks"] += 1
                self.stats["last_fallback"] = f"{image}: {exc}"
                self.log.system(f"Delta update of '{image}' failed, pulling the image instead:"
                                 f" {exc}", error=True)
        return await super().pull(image, auth=auth, progress=progress)

    # --- the delta path --------------------------------------------------------------------
    async def _source(self, image: str) -> tuple[str, str] | None:
        """(ref, image id) of an image this device has from the same repository: the one a
        container runs, else any; None when it has none (a first install pulls)."""
        repo = image.split("@", 1)[0]
        state = await self.observe()
        used = {c.image_id for c in state.containers}
        found = [(d, i.id) for i in state.images for d in i.repo_digests
                 if d.split("@", 1)[0] == repo and d != image]
        if not found:
            return None
        found.sort(key=lambda x: x[1] not in used)
        return found[0]

    async def _via_delta(self, image: str, source: tuple[str, str],
                         settings: DeltaSettings) -> str:
        src_ref, src_id = source
        self.log.system(f"Downloading delta for image '{image}' (from '{src_ref}')")
        t0 = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{os.getpid()}-{abs(hash(image))}.delta"
        work = path.with_suffix(".work")
        phases: dict[str, float] = {}
        try:
            t = time.perf_counter()
            size = await self._download(settings, src_ref, image, path)
            info = (await self.http.get("/info")).json()
            root = DataRoot(str(info.get("DockerRootDir") or "/var/lib/docker"))
            phases["download"] = time.perf_counter() - t
            header = await asyncio.to_thread(self._decode, path, work, src_id, root, phases)
            t = time.perf_counter()
            await self._load(header, work)
            phases["load"] = time.perf_counter() - t
        finally:
            path.unlink(missing_ok=True)
            shutil.rmtree(work, ignore_errors=True)
        self._loaded[image] = header.dest
        self._seen = None  # the next observe lists the new image under its ref
        self._state.write_text(json.dumps(self._loaded))
        self.stats["applied"] += 1
        self.stats["bytes"] += size
        self.stats["last_phases_s"] = {k: round(v, 3) for k, v in phases.items()}
        self.log.system(f"Applied delta for image '{image}': {size} bytes in "
                         f"{time.monotonic() - t0:.1f} s")
        return header.dest

    async def _download(self, settings: DeltaSettings, src: str, dest: str, path: Path) -> int:
        headers = {"Authorization": f"Bearer {settings.api_key}"}
        async with httpx.AsyncClient(base_url=settings.endpoint, headers=headers,
                                     timeout=60) as http:
            deadline = time.monotonic() + WAIT_S
            while True:
                r = await http.get("/api/v3/delta", params={"src": src, "dest": dest})
                if r.status_code == 200:
                    break
                if r.status_code != 202:
                    raise DeltaError(f"the server refused the delta (HTTP {r.status_code}: "
                                     f"{r.text[:300]})")
                if time.monotonic() > deadline:
                    raise DeltaError(f"the server did not make the delta in {WAIT_S:.0f} s")
                await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 10))
            info = r.json()
            free = shutil.disk_usage(self.dir).free
            need = int(info["size"]) + 2 * int(info["new_bytes"]) + (64 << 20)
            if free < need:  # the delta, the decoded layers, and the engine's copy of them
                raise DeltaError(f"not enough disk space for the delta: {need} bytes needed, "
                                 f"{free} free")
            got = 0
            async with http.stream("GET", str(info["location"])) as resp:
                if resp.status_code != 200:
                    raise DeltaError(f"delta download failed (HTTP {resp.status_code})")
                out = await asyncio.to_thread(open, path, "wb")
                try:
                    async for chunk in resp.aiter_bytes(_CHUNK):
                        got += len(chunk)
                        if got > int(info["size"]):
                            raise DeltaError("the delta is longer than announced")
                        out.write(chunk)
                finally:
                    out.close()
            return got

    def _decode(self, path: Path, work: Path, src_id: str, root: DataRoot,
                phases: dict[str, float]) -> Header:
        """Every new layer into `work/<diffId hex>.tar`, verified; the header (checked)."""
        work.mkdir()
        with open(path, "rb") as fh:
            header = read_header(fh)
            if header.src != src_id:
                raise DeltaError(f"the delta is from {header.src}, this device has {src_id}")
            refs: dict[tuple[str, ...], bytes] = {}
            for plan in header.layers:
                if plan.kind != "zstd":
                    continue
                t = time.perf_counter()
                if plan.ref not in refs:
                    refs[plan.ref] = _reference(root, src_id, plan.ref)
                phases["reference"] = phases.get("reference", 0) + time.perf_counter() - t
                t = time.perf_counter()
                with open(work / f"{plan.diff_id.removeprefix('sha256:')}.tar", "wb") as out:
                    for chunk in decode_layer(plan=plan, ref=refs[plan.ref], fh=fh):
                        out.write(chunk)
                phases["decode"] = phases.get("decode", 0) + time.perf_counter() - t
            if fh.read(1):
                raise DeltaError("the delta has bytes after its last frame")
        return header

    async def _load(self, header: Header, work: Path) -> None:
        r = await self.http.post(
            "/images/load", params={"quiet": "1"}, content=_archive(header, work),
            headers={"Content-Type": "application/x-tar"}, timeout=None)
        text = r.text
        if r.status_code != 200 or '"error' in text:
            raise DeltaError(f"the engine did not load the image: {text[-500:]}")
        got = await self.http.get(f"/images/{header.dest}/json")
        if got.status_code != 200 or got.json().get("Id") != header.dest:
            raise DeltaError(f"the engine does not list {header.dest} after loading it")


def _reference(root: DataRoot, src_id: str, diff_ids: tuple[str, ...]) -> bytes:
    """The source image's layers `diff_ids`, rebuilt from the data root, concatenated
    (tarsplit, with its CRC library, is loaded only by a supervisor that applies a delta)."""
    from edgefleet.engine.tarsplit import layer_digest

    layers = {x.diff_id: x for x in root.image(src_id).layers}
    buf = bytearray()
    for diff_id in diff_ids:
        layer = layers.get(diff_id)
        if layer is None:
            raise DeltaError(f"the source image has no layer {diff_id}")
        tar_split = (root.image_dir / "layerdb" / "sha256"
                     / layer.chain_id.removeprefix("sha256:") / "tar-split.json.gz")
        got = layer_digest(tar_split=tar_split, diff_dir=layer.diff_dir, sink=buf.extend)
        if got != diff_id:
            raise DeltaError(f"source layer {diff_id} on disk rebuilds to {got}")
    return bytes(buf)


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % 512)


async def _archive(header: Header, work: Path) -> AsyncIterator[bytes]:
    """A `docker save` archive of the image, streamed: the config, the new layers' files
    (read from disk in chunks), and manifest.json. Layers the engine has are listed only
    (`docker load` opens a layer file only when it lacks that layer)."""
    dest_hex = header.dest.removeprefix("sha256:")
    layers = [f"{p.diff_id.removeprefix('sha256:')}/layer.tar" for p in header.layers]
    manifest = json.dumps([{"Config": f"{dest_hex}.json", "RepoTags": None,
                            "Layers": layers}]).encode()
    yield _tar_header(f"{dest_hex}.json", len(header.config)) + header.config \
        + _padding(len(header.config))
    for plan, name in zip(header.layers, layers, strict=True):
        if plan.kind != "zstd":
            continue
        path = work / f"{plan.diff_id.removeprefix('sha256:')}.tar"
        size = path.stat().st_size
        yield _tar_header(name, size)
        fh = await asyncio.to_thread(open, path, "rb")
        try:
            while chunk := await asyncio.to_thread(fh.read, _CHUNK):
                yield chunk
        finally:
            fh.close()
        yield _padding(size)
    yield _tar_header("manifest.json", len(manifest)) + manifest + _padding(len(manifest))
    yield b"\0" * 1024
