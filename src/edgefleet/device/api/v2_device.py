"""The v2 device endpoints: version, name, tags, VPN, volume cleanup, journal logs and the
diagnostics (health checks and report)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from edgefleet.device.api import actions
from edgefleet.device.api.auth import AnyKey, Ctx, GlobalKey
from edgefleet.device.api.errors import ApiError
from edgefleet.plan.intents import IntentKind

router = APIRouter(tags=["v2"])
NO_JOURNAL = ("journald is not available on this host ({why}); the supervisor's and the"
              " services' logs are streamed by GET /v2/local/logs (NDJSON) instead")
NO_DIAGNOSTICS = ("diagnostics are not wired into this supervisor; run `edgefleet diagnose"
                  " checks` / `edgefleet diagnose report` on the device")


class Tag(BaseModel):
    name: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")
    value: str | None = Field(default="", max_length=10_000)


class Tags(BaseModel):
    tags: list[Tag] = Field(max_length=1000)


class JournalQuery(BaseModel):
    all: bool = False
    follow: bool = False
    count: int | Literal["all"] | None = Field(default=None)
    unit: str | None = Field(default=None, max_length=255, pattern=r"^[A-Za-z0-9@._:\\-]+$")
    containerId: str | None = Field(default=None, max_length=64,
                                    pattern=r"^[0-9a-f]+$")
    format: Literal["short", "short-iso", "short-precise", "short-monotonic", "verbose",
                    "export", "json", "json-pretty", "json-sse", "cat"] | None = None
    since: str | None = Field(default=None, max_length=64, pattern=r"^[0-9A-Za-z :.+-]+$")
    until: str | None = Field(default=None, max_length=64, pattern=r"^[0-9A-Za-z :.+-]+$")


@router.get("/v2/version")
async def version(ctx: Ctx, _who: AnyKey) -> dict[str, Any]:
    """The supervisor API version (balena-compatible semver; edgefleet's as build metadata)."""
    return {"status": "success", "version": ctx.version}


@router.get("/v2/device/name")
async def device_name(ctx: Ctx, _who: AnyKey) -> dict[str, Any]:
    """The device's name (from the target, else config.json's hostname, else the uuid)."""
    target, device = ctx.targets.target, ctx.targets.device
    name = (target.device.name if target else "") or device.device_name
    return {"status": "success", "deviceName": name or device.uuid[:7]}


def _tags(ctx: Ctx) -> list[dict[str, Any]]:
    raw = ctx.store.get_config(key="deviceTags")
    tags: list[dict[str, Any]] = json.loads(raw) if raw else []
    return tags


@router.get("/v2/device/tags")
async def get_tags(ctx: Ctx, _who: AnyKey) -> dict[str, Any]:
    """Device tags `[{id, name, value}]` (kept on the device)."""
    return {"status": "success", "tags": _tags(ctx)}


@router.patch("/v2/device/tags")
async def patch_tags(ctx: Ctx, _who: GlobalKey, body: Tags) -> dict[str, Any]:
    """Set tags by name; a `null` value deletes the tag."""
    current = {t["name"]: t for t in _tags(ctx)}
    next_id = max((int(t["id"]) for t in current.values()), default=0) + 1
    for tag in body.tags:
        if tag.value is None:
            current.pop(tag.name, None)
        elif tag.name in current:
            current[tag.name]["value"] = tag.value
        else:
            current[tag.name] = {"id": next_id, "name": tag.name, "value": tag.value}
            next_id += 1
    tags = sorted(current.values(), key=lambda t: int(t["id"]))
    ctx.store.set_config(key="deviceTags", value=json.dumps(tags))
    return {"status": "success", "tags": tags}


@router.get("/v2/device/vpn")
async def vpn(ctx: Ctx, _who: AnyKey) -> dict[str, Any]:
    """The tunnel to the fleet server (balena's VPN): enabled on a managed device, connected
    while the link is up."""
    link = getattr(ctx.loop, "link", None)
    tunnel = getattr(link, "tunnel", None)
    return {"status": "success", "vpn": {"enabled": link is not None,
                                         "connected": getattr(tunnel, "mux", None) is not None}}


@router.get("/v2/cleanup-volumes")
async def cleanup_volumes(ctx: Ctx, _who: GlobalKey) -> dict[str, Any]:
    """Remove supervised volumes of apps that are no longer in the target."""
    result = await actions.run_intent(ctx, kind=IntentKind.CLEANUP_VOLUMES)
    removed = sorted(result.steps[s] for s in result.done)
    kept = sorted(result.steps[s] for s in result.tolerated)
    if removed:
        ctx.logs.system(f"Removed orphaned volumes: {', '.join(removed)}")
    return {"status": "success", "removed": removed, "inUse": kept}


def _has_journal(dirs: tuple[str, ...]) -> bool:
    """journald keeps `<dir>/<machine-id>/*.journal`; an empty dir means it is not running."""
    return any(next(Path(d).glob("*.journal"), None) or next(Path(d).glob("*/*.journal"), None)
               for d in dirs)


def _journal_args(ctx: Ctx, q: JournalQuery) -> list[str]:
    args = [ctx.journalctl, "--no-pager"]
    if q.all:
        args.append("-a")
    if q.follow:
        args.append("--follow")
    if q.count is not None:
        args += ["-n", str(q.count)]
    if q.unit:
        args += ["-u", q.unit]
    if q.format:
        args += ["-o", q.format]
    if q.since:
        args += ["-S", q.since]
    if q.until:
        args += ["-U", q.until]
    if q.containerId:
        args.append(f"CONTAINER_ID_FULL={q.containerId}")
    return args


@router.post("/v2/journal-logs", responses={501: {"description": "no journald on this host"}},
             response_class=StreamingResponse)
async def journal_logs(ctx: Ctx, _who: GlobalKey,
                       body: JournalQuery | None = None) -> StreamingResponse:
    """The host journal (journalctl's output, streamed)."""
    if shutil.which(ctx.journalctl) is None:
        raise ApiError(501, NO_JOURNAL.format(why=f"no {ctx.journalctl} command"))
    if not _has_journal(ctx.journal_dirs):
        raise ApiError(501, NO_JOURNAL.format(why="no journal files in " + ", ".join(
            ctx.journal_dirs)))
    proc = await asyncio.create_subprocess_exec(
        *_journal_args(ctx, body or JournalQuery()), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)

    async def stream() -> AsyncIterator[bytes]:
        assert proc.stdout is not None
        try:
            while chunk := await proc.stdout.read(65536):
                yield chunk
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    return StreamingResponse(stream(), media_type="text/plain")


@router.get("/v2/diagnostics/checks")
async def diagnostics_checks(ctx: Ctx, _who: GlobalKey) -> dict[str, Any]:
    """The device health checks: `{diagnose_version, checks: [{name, success, status}]}`."""
    if ctx.diagnostics is None:
        raise ApiError(501, NO_DIAGNOSTICS)
    return await asyncio.to_thread(ctx.diagnostics.checks)


@router.get("/v2/diagnostics/report", response_class=PlainTextResponse)
async def diagnostics_report(ctx: Ctx, _who: GlobalKey) -> str:
    """The diagnostics report (ENGINE, HARDWARE, NETWORK, OS, SUPERVISOR, TIME), redacted."""
    if ctx.diagnostics is None:
        raise ApiError(501, NO_DIAGNOSTICS)
    secrets = ctx.keys.all_keys()
    diagnostics = ctx.diagnostics
    return await asyncio.to_thread(lambda: diagnostics.report(secrets=secrets))
