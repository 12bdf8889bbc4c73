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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from edgefleet.device.delta_apply import Decoder, archive, diagnose, reference
from edgefleet.device.logs import LogSink
from edgefleet.engine.delta import DeltaError, Header, check_manifest, read_header
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.storage import DataRoot
from edgefleet.model.delta import DELTA_VARS, delta_enabled
from edgefleet.model.engine_events import PullProgress
from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import ServiceSpec

WAIT_S = 600.0
"""How long to wait for the server to make a delta before pulling instead."""
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DeltaSettings:
    endpoint: str
    api_key: str


def delta_need(size: int, new_bytes: int) -> int:
    """Disk bytes applying a delta takes: the delta file, and the engine's two copies of the
    new layers (`docker load` unpacks the archive to its tmp dir, then into the layer store),
    plus a margin; the decoded layers themselves are streamed, never written here."""
    return size + 2 * new_bytes + (64 << 20)


__all__ = ["DELTA_VARS", "DeltaEngine", "DeltaSettings", "delta_enabled", "delta_need"]


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
        self._root: DataRoot | None = None

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
        async with httpx.AsyncClient(base_url=settings.endpoint, timeout=30, headers={
                "Authorization": f"Bearer {settings.api_key}"}) as http:
            for ref in refs:
                source = await self._source(ref) if "@" in ref else None
                if source is None:
                    continue
                r = await http.get("/api/v3/delta", params={"src": source[0], "dest": ref})
                if r.status_code == 200:
                    info = r.json()
                    total += delta_need(int(info["size"]), int(info["new_bytes"]))
        return total

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
        refs: dict[tuple[str, ...], bytes] = {}
        used: tuple[str, ...] = ()
        root: DataRoot | None = None
        try:
            t = time.perf_counter()
            size, data_root = await asyncio.gather(
                self._download(settings, src_ref, image, path), self._data_root())
            root = data_root
            phases["download"] = time.perf_counter() - t
            t = time.perf_counter()
            header, offset = await asyncio.to_thread(_header, path, src_id)
            check_manifest(header, image)  # the result must be the image the release names
            refs, existed = await asyncio.gather(
                asyncio.to_thread(_references, header, src_id, data_root), self._has(header.dest))
            phases["reference"] = time.perf_counter() - t
            used = tuple(d for ids in refs for d in ids)
            await self._apply(header, path, offset, refs, phases, existed=existed)
            phases["load"] = time.perf_counter() - t - phases["reference"]
        except DeltaError as exc:
            if "hashes to" in str(exc) and root is not None and used:  # name the culprit
                why = await asyncio.to_thread(diagnose, root, src_id,
                                              used)
                if why:
                    raise DeltaError(f"{exc} ({why})") from None
            raise
        finally:
            path.unlink(missing_ok=True)
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
        """Ask for the delta until it is made (the server answers with the delta itself, or,
        if it is older, where to get it), check the disk has room for applying it, save it."""
        headers = {"Authorization": f"Bearer {settings.api_key}"}
        async with httpx.AsyncClient(base_url=settings.endpoint, headers=headers,
                                     timeout=60) as http:
            deadline = time.monotonic() + WAIT_S
            while True:
                async with http.stream(
                        "GET", "/api/v3/delta", params={"src": src, "dest": dest},
                        headers={"Accept": "application/octet-stream, application/json"}) as r:
                    kind = r.headers.get("content-type", "")
                    if r.status_code == 200 and kind.startswith("application/octet-stream"):
                        size = int(r.headers.get("x-delta-size") or r.headers["content-length"])
                        self._check_space(size, int(r.headers.get("x-delta-new-bytes") or 0))
                        return await self._save(r, size, path)
                    await r.aread()
                if r.status_code == 200:
                    break
                if r.status_code != 202:
                    raise DeltaError(f"the server refused the delta (HTTP {r.status_code}: "
                                     f"{r.text[:300]})")
                if time.monotonic() > deadline:
                    raise DeltaError(f"the server did not make the delta in {WAIT_S:.0f} s")
                await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 10))
            info = r.json()
            self._check_space(int(info["size"]), int(info["new_bytes"]))
            async with http.stream("GET", str(info["location"])) as resp:
                if resp.status_code != 200:
                    raise DeltaError(f"delta download failed (HTTP {resp.status_code})")
                return await self._save(resp, int(info["size"]), path)

    def _check_space(self, size: int, new_bytes: int) -> None:
        free = shutil.disk_usage(self.dir).free
        need = delta_need(size, new_bytes)
        if free < need:
            raise DeltaError(f"not enough disk space for the delta: {need} bytes needed, "
                             f"{free} free")

    @staticmethod
    async def _save(resp: httpx.Response, size: int, path: Path) -> int:
        got = 0
        out = await asyncio.to_thread(open, path, "wb")
        try:
            async for chunk in resp.aiter_bytes(_CHUNK):
                got += len(chunk)
                if got > size:
                    raise DeltaError("the delta is longer than announced")
                out.write(chunk)
        finally:
            out.close()
        if got != size:
            raise DeltaError(f"the delta download ended after {got} of {size} bytes")
        return got

    async def _data_root(self) -> DataRoot:
        if self._root is None:
            info = (await self.http.get("/info")).json()
            self._root = DataRoot(str(info.get("DockerRootDir") or "/var/lib/docker"))
        return self._root

    async def _has(self, image_id: str) -> bool:
        return (await self.http.get(f"/images/{image_id}/json")).status_code == 200

    async def _apply(self, header: Header, path: Path, offset: int,
                     refs: dict[tuple[str, ...], bytes], phases: dict[str, float], *,
                     existed: bool) -> None:
        """Decode and load in one stream (device/delta_apply.py); on any failure, nothing
        of it stays in the engine (unless it was there before)."""
        decoder = Decoder(path=path, offset=offset, header=header, refs=refs)
        times: dict[str, float] = {}
        t = time.perf_counter()
        try:
            r = await self.http.post(
                "/images/load", params={"quiet": "1"}, content=archive(header, decoder, times),
                headers={"Content-Type": "application/x-tar"}, timeout=None)
            text = r.text
            if r.status_code != 200 or '"error' in text:
                raise DeltaError(f"the engine did not load the image: {text[-500:]}")
            got = await self.http.get(f"/images/{header.dest}/json")
            if got.status_code != 200 or got.json().get("Id") != header.dest:
                raise DeltaError(f"the engine does not list {header.dest} after loading it")
        except BaseException:
            if not existed:
                await self._discard(header.dest)
            raise
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


def _references(header: Header, src_id: str, root: DataRoot) -> dict[tuple[str, ...], bytes]:
    """The reference streams the delta's frames use, each rebuilt once."""
    return {ids: reference(root, src_id, ids)
            for ids in dict.fromkeys(p.ref for p in header.layers if p.kind == "zstd")}
