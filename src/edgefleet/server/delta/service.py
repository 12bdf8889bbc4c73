"""Delta generation off the request path: one worker thread makes each delta once, records
its progress and cost, and keeps the result on disk (`<data_dir>/deltas/<key>.delta`), so a
fleet updating together makes it once."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.engine.delta import encode
from edgefleet.server.delta.blobs import Registry


@dataclass
class Job:
    """One delta: `pending`, `ready` or `failed`, and what it cost."""

    key: str
    src: str
    dest: str
    status: str = "pending"
    image_id: str = ""
    """The destination image's id (what the device's engine lists once it applied the delta)."""
    progress: float = 0.0
    error: str = ""
    size: int = 0
    """Bytes of the delta file."""
    new_bytes: int = 0
    """Bytes of the new layers' tar streams (what applying writes, before the engine)."""
    pull_bytes: int = 0
    """What a registry pull of the new layers downloads (their compressed blobs + config)."""
    cpu_s: float = 0.0
    wall_s: float = 0.0
    layers: dict[str, int] = field(default_factory=dict)
    format: int = 1
    """FORMAT when made (a delta cached by an older server is made again)."""

    def public(self) -> dict[str, Any]:
        return asdict(self)


FORMAT = 3
"""2: the header carries the destination's manifest (devices check it against the ref);
3: layers may be "tar" plans (engine/delta_tar.py)."""


def job_key(src: str, dest: str) -> str:
    return hashlib.sha256(f"{src}\n{dest}".encode()).hexdigest()[:40]


def _thread_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_utime + ru.ru_stime


class DeltaService:
    """Makes and caches deltas from the registry's images; `served` counts bytes sent."""

    def __init__(self, *, data_dir: Path, registry: str | None) -> None:
        self.dir = data_dir / "deltas"
        self.registry = registry
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta")
        self.served = 0
        """Bytes of delta files sent to devices by this process."""

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.delta"

    def request(self, src: str, dest: str) -> Job:
        """The job for src → dest: cached, running, or started now."""
        key = job_key(src, dest)
        with self.lock:
            job = self.jobs.get(key)
            if job is not None and job.status != "failed":
                return job
            meta = self.dir / f"{key}.json"
            if job is None and meta.exists() and self.path(key).exists():
                job = Job(**json.loads(meta.read_text()))
                if job.format >= FORMAT:
                    self.jobs[key] = job
                    return job
            job = Job(key=key, src=src, dest=dest, format=FORMAT)
            self.jobs[key] = job
        self.pool.submit(self._make, job)
        return job

    def _make(self, job: Job) -> None:
        t0, c0 = time.monotonic(), _thread_cpu()
        if self.registry is None:
            job.status, job.error = "failed", "this server has no registry"
            return
        reg = Registry(self.registry)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            src, dest = reg.image(job.src), reg.image(job.dest)
            job.image_id = dest.image_id
            have = set(src.diff_ids)
            job.pull_bytes = len(dest.config) + sum(
                size for diff_id, (_, _, size) in zip(dest.diff_ids, dest.layers, strict=True)
                if diff_id not in have)
            job.progress = 0.1
            tmp = self.dir / f".{job.key}.{os.getpid()}.tmp"

            def progress(done: int, total: int) -> None:
                job.progress = 0.1 + 0.9 * done / max(total, 1)

            with open(tmp, "wb") as out:
                header = encode(src_id=src.image_id, src_config=src.config,
                                dest_config=dest.config,
                                src_stream=lambda d: reg.layer_stream(src, d),
                                dest_stream=lambda d: reg.layer_stream(dest, d), out=out,
                                progress=progress, dest_manifest=dest.manifest)
            tmp.rename(self.path(job.key))
            job.size = self.path(job.key).stat().st_size
            job.new_bytes = sum(p.size for p in header.layers if p.kind != "reuse")
            job.layers = {p.diff_id: p.length for p in header.layers if p.kind != "reuse"}
            job.cpu_s, job.wall_s = _thread_cpu() - c0, time.monotonic() - t0
            job.progress, job.status = 1.0, "ready"
            (self.dir / f"{job.key}.json").write_text(json.dumps(job.public()))
        except Exception as exc:  # recorded for the device, which falls back to a pull
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            job.cpu_s, job.wall_s = _thread_cpu() - c0, time.monotonic() - t0
        finally:
            reg.close()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
