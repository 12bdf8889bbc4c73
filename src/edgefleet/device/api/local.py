"""The endpoints balena CLI's local mode uses (compat §9): local target state (v2 format),
device info, and the NDJSON log stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import StreamingResponse

from edgefleet.device.api import hostinfo
from edgefleet.device.api.auth import AnyKey, Caller, Ctx, GlobalKey
from edgefleet.device.api.errors import ApiError
from edgefleet.device.logs import LogSink
from edgefleet.model.errors import InvalidInput

router = APIRouter(tags=["local mode"])
END_OF_STREAM: dict[str, Any] = {"end_of_stream": True}
"""Put in a subscriber queue by `end_log_streams`: the stream ends cleanly."""
NOT_LOCAL = ("Target state can only be {what} when the device is in local mode (config.json"
             " localMode: true, or the SUPERVISOR_LOCAL_MODE config variable)")


def _require_local(ctx: Ctx, what: str) -> None:
    if not ctx.local.enabled:
        message = NOT_LOCAL.format(what=what)
        if ctx.local.refusal:
            message += f"; {ctx.local.refusal}"
        raise ApiError(400, message)


@router.get("/v2/local/target-state")
async def get_local_target(ctx: Ctx, _who: GlobalKey) -> dict[str, Any]:
    """The current target in balena CLI's v2 local format."""
    _require_local(ctx, "retrieved")
    return {"status": "success", "state": ctx.local.local_target()}


@router.post("/v2/local/target-state")
async def set_local_target(ctx: Ctx, _who: GlobalKey,
                     body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """Set the target from a v2 local document `{local: {name, config, apps}}`."""
    _require_local(ctx, "set")
    try:
        ctx.local.set_local_target(data=body)
    except InvalidInput as exc:
        raise ApiError(400, str(exc)) from None
    return {"status": "success", "message": "OK"}


@router.get("/v2/local/device-info")
async def device_info(ctx: Ctx, _who: AnyKey) -> dict[str, Any]:
    """Architecture and device type (balena CLI resolves Dockerfile.template with them)."""
    return {"status": "success", "info": {"arch": hostinfo.arch(),
                                          "deviceType": ctx.config.device_type}}


def _line(record: dict[str, Any], names: dict[str, int]) -> bytes:
    out: dict[str, Any] = {"message": record["message"], "timestamp": record["ts_ms"],
                           "isSystem": record["is_system"], "isStdErr": record["is_stderr"]}
    if not record["is_system"] and record["service"]:
        out["serviceName"] = record["service"]
        if record["app_uuid"] in names:
            out["appId"] = names[record["app_uuid"]]
    return (json.dumps(out) + "\n").encode()


@router.get("/v2/local/logs", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
async def local_logs(ctx: Ctx, who: AnyKey) -> StreamingResponse:
    """Live logs of the supervisor and the services, one JSON object per line; the first
    line is `{"message": "Streaming logs", "isSystem": true}`."""
    sink = ctx.logs
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sink.subscribers.add(queue)
    app_ids = {a.app_uuid: a.app_id for a in ctx.targets.desired.apps.values()}

    def visible(record: dict[str, Any], caller: Caller) -> bool:
        return caller.app_uuid is None or record["app_uuid"] == caller.app_uuid

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield (json.dumps({"message": "Streaming logs", "isSystem": True}) + "\n").encode()
            while True:
                record = await queue.get()
                if record is END_OF_STREAM:
                    return
                if visible(record, who):
                    yield _line(record, app_ids)
        finally:
            sink.subscribers.discard(queue)

    return StreamingResponse(stream(), media_type="application/x-ndjson")


def end_log_streams(sink: LogSink) -> None:
    """End every open `/v2/local/logs` stream (before the server shuts down)."""
    for queue in list(sink.subscribers):
        queue.put_nowait(END_OF_STREAM)
