"""Downloading a delta from the server (device/delta.py drives it): ask until it is made (the
server answers with the delta itself, or, if it is older, where to get it), check the disk has
room for applying it, save it to a file."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from edgefleet.device.trust import tls_context
from edgefleet.engine.delta import DeltaError

WAIT_S = 600.0
"""How long to wait for the server to make a delta before pulling instead."""
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DeltaSettings:
    endpoint: str
    api_key: str
    root_ca: str | None = None
    """config.json's balenaRootCA (PEM), trusted for an https delta server."""


def delta_need(size: int, new_bytes: int) -> int:
    """Disk bytes applying a delta takes: the delta file, and the engine's two copies of the
    new layers (a pull keeps each blob in its tmp dir until it is registered, `docker load`
    unpacks the archive there first; then the layer store), plus a margin; the decoded layers
    themselves are streamed, never written here."""
    return size + 2 * new_bytes + (64 << 20)


def server_client(endpoint: str, root_ca: str | None = None) -> httpx.AsyncClient:
    """A client for the delta server, kept for the process: making one loads the CA bundle
    (about 30 ms here, a tenth of an update's time), skipped for a plain-HTTP endpoint; an
    https one trusts what the device's API calls trust (`device/trust.py`)."""
    if endpoint.startswith("http://"):
        return httpx.AsyncClient(base_url=endpoint, timeout=60, verify=False)
    return httpx.AsyncClient(base_url=endpoint, timeout=60, verify=tls_context(root_ca))


async def download(http: httpx.AsyncClient, settings: DeltaSettings, src: str, dest: str,
                   path: Path) -> int:
    """Save the delta src → dest to `path`; its size."""
    auth = {"Authorization": f"Bearer {settings.api_key}"}
    deadline = time.monotonic() + WAIT_S
    while True:
        async with http.stream(
                "GET", "/api/v3/delta", params={"src": src, "dest": dest},
                headers={**auth,
                         "Accept": "application/octet-stream, application/json"}) as r:
            kind = r.headers.get("content-type", "")
            if r.status_code == 200 and kind.startswith("application/octet-stream"):
                size = int(r.headers.get("x-delta-size") or r.headers["content-length"])
                check_space(path.parent, size, int(r.headers.get("x-delta-new-bytes") or 0))
                return await _save(r, size, path)
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
    check_space(path.parent, int(info["size"]), int(info["new_bytes"]))
    async with http.stream("GET", str(info["location"]), headers=auth) as resp:
        if resp.status_code != 200:
            raise DeltaError(f"delta download failed (HTTP {resp.status_code})")
        return await _save(resp, int(info["size"]), path)


def check_space(where: Path, size: int, new_bytes: int) -> None:
    free = shutil.disk_usage(where).free
    need = delta_need(size, new_bytes)
    if free < need:
        raise DeltaError(f"not enough disk space for the delta: {need} bytes needed, "
                         f"{free} free")


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
