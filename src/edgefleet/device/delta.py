"""Delta updates on the device (issue 19): an engine wrapper whose `pull` first tries a delta
from the image this device already has for the same repository, and falls back to the engine's
normal pull on any failure (the reason logged, the fallback counted in `stats`).

With the `delta` configuration variable on (BALENA_SUPERVISOR_DELTA / RESIN_SUPERVISOR_DELTA,
fleet-wide or per device, as any configuration variable):
1. ask the server (`deltaEndpoint`, else `apiEndpoint`) for the delta src → dest, wait while
   it is made, check the disk has room for it, download it to the data dir (delta_fetch.py);
   check its manifest hashes to the digest the release names and names its image config;
2. rebuild the source layers the delta refers to from the engine's data root (delta_apply.py,
   engine/tarsplit.py), the zstd reference of its frames;
3. hand the new layers to the engine, each decoded as it streams, its diffId checked before
   its last byte goes, by the transports in `transports` (tried in order; DEFAULT_TRANSPORTS):
   - "load" (the default): an image archive streamed into `POST /images/load`
     (delta_apply.py);
   - "registry": the engine pulls them from a loopback registry that lives for this one apply
     (delta_registry.py), the image is then registered by its config alone.
   A layer that does not decode to its diffId fails the delta (the next transport would fail
   alike): the normal pull follows. A registry pull that fails otherwise (the engine cannot
   reach 127.0.0.1, ...) is logged and the next transport takes over (the normal pull when it
   is the last); when the engine never reached the registry, the registry transport is not
   tried again by this process.
4. check the engine holds the image by its id; nothing else of the apply stays in it.

An image applied this way has no repo digest in the engine, so the wrapper remembers ref → id
(`deltas.json` in the data dir) and adds the ref to that image's digests in `observe`, so the
planner finds it as it would a pulled one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx

from edgefleet.device.delta_apply import (
    Decoder,
    archive,
    build_prefixes,
    config_archive,
    diagnose,
)
from edgefleet.device.delta_blobs import plan_blobs
from edgefleet.device.delta_fetch import DeltaSettings, delta_need, download, server_client
from edgefleet.device.delta_layers import OldFiles, Prefixes
from edgefleet.device.delta_registry import REPO_PREFIX, LocalRegistry
from edgefleet.device.logs import LogSink
from edgefleet.engine.delta import DeltaError, Header, check_manifest, read_header
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.storage import DataRoot
from edgefleet.model.delta import DELTA_VARS, delta_enabled
from edgefleet.model.engine_events import PullProgress
from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import ServiceSpec

__all__ = ["DELTA_VARS", "DeltaEngine", "DeltaSettings", "delta_enabled", "delta_need"]
TRANSPORTS = ("load", "registry")
DEFAULT_TRANSPORTS = ("load",)
"""Measured by bench/delta.py (both transports timed in the same runs, on dockerd 20.10): the
load transport was the faster in every run of this work, also after the registry transport
sends old files by sendfile, e.g. one-file change 0.45 s vs 0.60 s through the registry,
identical rebuild 0.57 s vs 0.66 s (medians of 5, load average 1.2-1.7; an A/B of that change
alone: identical rebuild 0.61 s vs 0.67 s before it). The registry transport is bound by the
engine: it writes each blob to a temporary file and hashes it before extracting it (serving
66 MB ends ~0.3 s in, the last layer's extraction takes ~0.3 s more), and the image must then
be registered by its config (~0.05 s); serving the lowest layer first was tried and slower.
Its verdict line in
bench/RESULTS.md says which is faster on the machine it runs on."""


class _EngineSide(Exception):
    """The registry pull failed for a reason other than the delta itself."""


class DeltaEngine(DockerEngine):
    """The Docker engine adapter, whose pulls go through deltas when `settings()` says so."""

    def __init__(self, *, socket: str, scope: str, data_dir: Path, log: LogSink) -> None:
        super().__init__(socket=socket, scope=scope)
        self.dir = data_dir / "deltas"
        self.log = log
        self.settings: Callable[[], DeltaSettings | None] = lambda: None
        self.stats: dict[str, Any] = {"applied": 0, "fallbacks": 0, "bytes": 0,
                                      "last_fallback": "", "via": {t: 0 for t in TRANSPORTS},
                                      "transport_fallbacks": 0, "last_transport_fallback": ""}
        self.transports: tuple[str, ...] = DEFAULT_TRANSPORTS
        self._loaded: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            self._loaded = dict(json.loads((data_dir / "deltas.json").read_text()))
        self._state = data_dir / "deltas.json"
        self._seen: tuple[object, EngineState] | None = None
        self._root: DataRoot | None = None
        self._registry_ok = True
        self._server_http: httpx.AsyncClient | None = None

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

    async def delta_space(self, refs: list[str]) -> int:
        """Disk bytes applying deltas to these images needs (`delta_need` of each delta the
        server has ready; 0 when deltas are off, or for an image without a source here or
        whose delta is not made yet: the delta path checks again before it downloads)."""
        settings = self.settings()
        if settings is None:
            return 0
        total = 0
        http = self._server(settings)
        for ref in refs:
            source = await self._source(ref) if "@" in ref else None
            if source is None:
                continue
            r = await http.get("/api/v3/delta", params={"src": source[0], "dest": ref},
                               headers={"Authorization": f"Bearer {settings.api_key}"})
            if r.status_code == 200:
                info = r.json()
                total += delta_need(int(info["size"]), int(info["new_bytes"]))
        return total

    def _server(self, settings: DeltaSettings) -> httpx.AsyncClient:
        """The client for the delta server (one, made again if the endpoint changes)."""
        if self._server_http is None or str(self._server_http.base_url).rstrip("/") \
                != settings.endpoint.rstrip("/"):
            old, self._server_http = self._server_http, server_client(settings.endpoint,
                                                                      settings.root_ca)
            if old is not None:
                asyncio.get_running_loop().create_task(old.aclose())
        return self._server_http

    async def close(self) -> None:
        if self._server_http is not None:
            await self._server_http.aclose()
            self._server_http = None
        await super().close()

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
        phases: dict[str, float] = {}
        try:
            t = time.perf_counter()
            size, root = await asyncio.gather(
                download(self._server(settings), settings, src_ref, image, path),
                self._data_root())
            phases["download"] = time.perf_counter() - t
            header, offset = await asyncio.to_thread(_header, path, src_id)
            check_manifest(header, image)  # the result must be the image the release names
            via = await self._apply(header, path, offset, root, src_id, phases)
        finally:
            path.unlink(missing_ok=True)
        self._loaded[image] = header.dest
        self._seen = None  # the next observe lists the new image under its ref
        self._state.write_text(json.dumps(self._loaded))
        self.stats["applied"] += 1
        self.stats["bytes"] += size
        self.stats["via"][via] = self.stats["via"].get(via, 0) + 1
        self.stats["last_phases_s"] = {k: round(v, 3) for k, v in phases.items()}
        self.log.system(f"Applied delta for image '{image}': {size} bytes in "
                         f"{time.monotonic() - t0:.1f} s (through {via})")
        return header.dest

    async def _apply(self, header: Header, path: Path, offset: int, root: DataRoot,
                     src_id: str, phases: dict[str, float]) -> str:
        """Hand the delta's image to the engine by the first transport that works; the one
        used ("present" when the engine had the image already). On any failure, nothing of
        it stays in the engine."""
        if await self._has(header.dest):
            return "present"
        prefixes: Prefixes = {ids: Future() for ids in dict.fromkeys(
            p.ref for p in header.layers if p.kind == "zstd")}
        build = asyncio.create_task(asyncio.to_thread(_build, prefixes, root, src_id, phases))
        used = tuple(dict.fromkeys([*(d for p in header.layers for d in p.ref),
                                    *(o[1] for p in header.layers for o in p.ops if o[1])]))
        files = await asyncio.to_thread(OldFiles, root, src_id)
        ways = [w for w in self.transports if w != "registry" or self._registry_ok]
        try:
            for n, how in enumerate(ways):
                try:
                    if how == "registry":
                        await self._via_registry(header, path, offset, root, src_id, prefixes,
                                                 files, phases)
                    else:
                        await self._via_load(header, path, offset, prefixes, files, phases)
                    return how
                except _EngineSide as exc:
                    if n + 1 == len(ways):
                        raise DeltaError(str(exc)) from None
                    self.stats["transport_fallbacks"] += 1
                    self.stats["last_transport_fallback"] = str(exc)
                    self.log.system(f"Delta for image {header.dest}: the engine's pull from "
                                    f"the local registry failed, loading the image instead: "
                                    f"{exc}", error=True)
            raise DeltaError("no delta transport is enabled")
        except BaseException as exc:
            await self._discard(header.dest)
            if isinstance(exc, DeltaError) and "hashes to" in str(exc) and used:
                why = await asyncio.to_thread(diagnose, root, src_id, used)  # name the culprit
                if why:
                    raise DeltaError(f"{exc} ({why})") from None
            raise
        finally:
            await asyncio.wait([build])

    async def _via_registry(self, header: Header, path: Path, offset: int, root: DataRoot,
                            src_id: str, prefixes: Prefixes, files: OldFiles,
                            phases: dict[str, float]) -> None:
        """The engine pulls the new layers from a loopback registry (delta_registry.py) under
        a carrier image; the image is then registered by its config, the carrier removed."""
        t = time.perf_counter()
        sweep = asyncio.create_task(self._sweep())
        try:
            _, manifest, blobs = await asyncio.to_thread(plan_blobs, header, root=root,
                                                         src_id=src_id, path=path,
                                                         offset=offset, prefixes=prefixes,
                                                         files=files)
        finally:
            await sweep
        reg = LocalRegistry(manifest=manifest, blobs=blobs)
        try:
            async with reg:
                pull = asyncio.create_task(DockerEngine.pull(self, reg.ref))
                broken = asyncio.create_task(reg.broken.wait())
                try:
                    await asyncio.wait({pull, broken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    broken.cancel()
                    pull.cancel()  # (a no-op once it is done)
                    result = (await asyncio.gather(pull, return_exceptions=True))[0]
            if reg.failed is not None:  # a layer did not rebuild to its digest
                raise (reg.failed if isinstance(reg.failed, DeltaError)
                       else DeltaError(f"rebuilding a layer failed: {reg.failed!r}"))
            if isinstance(result, BaseException):
                if not reg.requests:
                    self._registry_ok = False  # the engine cannot reach this process
                raise _EngineSide(f"{result}")
            phases["pull"] = time.perf_counter() - t
            t = time.perf_counter()
            await self._register(header)
            phases["register"] = time.perf_counter() - t
        finally:
            await self._drop(reg.ref)

    async def _sweep(self) -> None:
        """Remove the carriers a crash may have left (every one of this supervisor's)."""
        for image in (await self.observe()).images:
            for ref in (*image.repo_digests, *image.repo_tags):
                if ref.startswith("127.0.0.1:") and f"/{REPO_PREFIX}" in ref:
                    await self._drop(ref)

    async def _register(self, header: Header) -> None:
        """Register the image by its config: every layer is in the engine's layer store."""
        r = await self.http.post("/images/load", params={"quiet": "1"},
                                 content=config_archive(header),
                                 headers={"Content-Type": "application/x-tar"}, timeout=None)
        self._lists.pop("images", None)
        if r.status_code != 200 or '"error' in r.text:
            raise DeltaError(f"the engine did not register the image: {r.text[-500:]}")
        await self._check_listed(header)

    async def _drop(self, ref: str) -> None:
        """Remove the carrier's reference (and with it the carrier), if the pull made it."""
        with contextlib.suppress(Exception):
            self._lists.pop("images", None)
            await self.http.delete(f"/images/{ref}")

    async def _check_listed(self, header: Header) -> None:
        got = await self.http.get(f"/images/{header.dest}/json")
        if got.status_code != 200 or got.json().get("Id") != header.dest:
            raise DeltaError(f"the engine does not list {header.dest} after loading it")

    async def _data_root(self) -> DataRoot:
        if self._root is None:
            info = (await self.http.get("/info")).json()
            self._root = DataRoot(str(info.get("DockerRootDir") or "/var/lib/docker"))
        return self._root

    async def _has(self, image_id: str) -> bool:
        return (await self.http.get(f"/images/{image_id}/json")).status_code == 200

    async def _via_load(self, header: Header, path: Path, offset: int,
                        prefixes: Prefixes, files: OldFiles,
                        phases: dict[str, float]) -> None:
        """Decode and load in one stream (device/delta_apply.py); the upload starts while
        the reference is rebuilt."""
        decoder = Decoder(path=path, offset=offset, header=header, prefixes=prefixes,
                          files=files)
        times: dict[str, float] = {}
        t = time.perf_counter()
        try:
            r = await self.http.post(
                "/images/load", params={"quiet": "1"}, content=archive(header, decoder, times),
                headers={"Content-Type": "application/x-tar"}, timeout=None)
            self._lists.pop("images", None)
            text = r.text
            if r.status_code != 200 or '"error' in text:
                raise DeltaError(f"the engine did not load the image: {text[-500:]}")
            await self._check_listed(header)
        finally:
            decoder.stop()
            phases["decode"] = decoder.decode_s
            if "sent" in times:
                phases["engine"] = time.perf_counter() - times["sent"]
                phases["send"] = times["sent"] - t

    async def _discard(self, image_id: str) -> None:
        """Remove an image a failed delta may have left in the engine (by id: untagged)."""
        with contextlib.suppress(Exception):
            r = await self.http.get(f"/images/{image_id}/json")
            if r.status_code == 200:
                await self.http.delete(f"/images/{image_id}", params={"force": "1"})
                self.log.system(f"Removed {image_id}, left by a failed delta", error=True)


def _header(path: Path, src_id: str) -> tuple[Header, int]:
    """The delta's header (checked against the source image) and where its frames start."""
    with open(path, "rb") as fh:
        header = read_header(fh)
        offset = fh.tell()
    if header.src != src_id:
        raise DeltaError(f"the delta is from {header.src}, this device has {src_id}")
    return header, offset


def _build(out: Prefixes, root: DataRoot, src_id: str, phases: dict[str, float]) -> None:
    t = time.perf_counter()
    build_prefixes(out, root, src_id)
    phases["reference"] = time.perf_counter() - t
