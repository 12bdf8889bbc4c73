"""The device-facing API, openBalena-compatible (compat §2-4): register, state, reports, logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from edgefleet.model.timeutil import now_ms
from edgefleet.server import keys
from edgefleet.server import logs as logstore
from edgefleet.server import tables as t
from edgefleet.server.access import require_device, unauthorized
from edgefleet.server.authz import Access, allow_or_device
from edgefleet.server.device_schemas import (
    UPDATE_STATUSES,
    DeviceReport,
    LogLine,
    RegisterBody,
    RegisterReply,
)
from edgefleet.server.devicetypes import same_arch
from edgefleet.server.reports import apply_reports
from edgefleet.server.state import ServerState

STATE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "The v3 target state", "content": {"application/json": {}}},
    304: {"description": "Unchanged since If-None-Match"},
    401: {"description": "No or unknown key"},
    403: {"description": "Not this device's key"}}


def router(*, state: ServerState) -> APIRouter:
    """The `/device/...` routes, bound to one process's state."""
    api = APIRouter(tags=["device"])
    limiters: dict[int, logstore.RateLimiter] = {}

    @api.post("/device/register", status_code=201, response_model=RegisterReply,
              responses={401: {}, 403: {}, 409: {"description": "uuid already registered"}})
    def register(body: RegisterBody, request: Request) -> RegisterReply:
        """Register a device into the provisioning key's fleet; the device brings its uuid
        and (usually) its own API key."""
        key = keys.bearer(request.headers.get("authorization"))
        principal = state.principal_sync(key) if key else None
        if principal is None:
            raise unauthorized()
        if not isinstance(principal, keys.ProvisioningPrincipal):
            raise HTTPException(403, "registering needs the fleet's provisioning key")
        if principal.fleet_id != body.application:
            raise HTTPException(403, "this provisioning key belongs to another fleet")
        try:
            with state.db.writing() as s:
                fleet = s.get(t.Fleet, body.application)
                if fleet is None:
                    raise HTTPException(403, "this provisioning key belongs to another fleet")
                if not same_arch(device_type=body.device_type, fleet_type=fleet.device_type):
                    raise HTTPException(400, f"device type {body.device_type!r} cannot run "
                                             f"fleet {fleet.name!r} ({fleet.device_type})")
                if s.execute(sa.select(t.Device.id).where(t.Device.uuid == body.uuid)).first():
                    raise HTTPException(409, f"a device with uuid {body.uuid} is registered")
                if body.api_key and keys.key_exists(s, key=body.api_key):
                    raise HTTPException(409, "this api_key is already in use")
                device = t.Device(uuid=body.uuid, fleet_id=fleet.id, name=body.uuid[:7],
                                  device_type=body.device_type, os_version=body.os_version,
                                  os_variant=body.os_variant, mac_address=body.mac_address,
                                  supervisor_version=body.supervisor_version,
                                  created_ms=now_ms())
                s.add(device)
                s.flush()
                api_key = keys.add_key(s, kind="device", key=body.api_key,
                                       device_id=device.id, name=f"device {body.uuid}")
                reply = RegisterReply(id=device.id, uuid=device.uuid, api_key=api_key)
        except IntegrityError:
            raise HTTPException(409, f"a device with uuid {body.uuid} is registered") from None
        return reply

    @api.get("/device/v3/{uuid}/state", responses=STATE_DOC, response_class=Response)
    async def get_state(uuid: str, request: Request) -> Response:
        """The device's target state; every call is a heartbeat. Honours If-None-Match."""
        who, rendered = await state.poll(request.headers.get("authorization"), uuid)
        principal = require_device(who, uuid=uuid)
        state.heartbeat(principal.device_id, now_ms())
        if rendered is None:
            raise unauthorized("this device no longer exists")
        if request.headers.get("if-none-match") == rendered.etag:
            return Response(status_code=304, headers={"ETag": rendered.etag})
        return Response(rendered.body, media_type="application/json",
                        headers={"ETag": rendered.etag, "Cache-Control": "no-cache"})

    @api.patch("/device/v3/state", responses={400: {}, 401: {}, 403: {}}, openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": {
                "$ref": "#/components/schemas/DeviceReport"}}}}}})
    async def patch_state(request: Request) -> Response:
        """A state report `{uuid: {...}}` (a diff against the last one); device key only."""
        principal = await state.principal(request.headers.get("authorization"))
        if principal is None:
            raise unauthorized()
        if not isinstance(principal, keys.DevicePrincipal):
            raise HTTPException(403, "reports need the device's own API key")
        try:
            doc = json.loads(await request.body())
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(doc, dict) or not doc:
            raise HTTPException(400, "expected {<device uuid>: {...}}")
        reports: dict[str, DeviceReport] = {}
        for uuid, body in doc.items():
            require_device(principal, uuid=uuid)
            try:
                reports[uuid] = DeviceReport.model_validate(body)
            except ValidationError as exc:
                problems = "; ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"]
                                     for e in exc.errors())
                raise HTTPException(400, f"invalid report for {uuid}: {problems}") from None
            bad = [f"apps.{a}.releases.{c}.update_status"
                   for a, app in (reports[uuid].apps or {}).items()
                   for c, rel in app.releases.items()
                   if rel.update_status is not None and rel.update_status not in UPDATE_STATUSES]
            if bad:
                raise HTTPException(400, f"{', '.join(bad)}: not one of {UPDATE_STATUSES}")
        for report in reports.values():
            await state.writer.submit_grouped(apply_reports,
                                              (principal.device_id, report, now_ms()))
        return JSONResponse("OK")

    @api.post("/device/v2/{uuid}/log-stream", status_code=201,
              responses={401: {}, 403: {}})
    async def log_stream(uuid: str, request: Request) -> dict[str, int]:
        """A long-lived NDJSON upload of log lines `{message, timestamp, isSystem, isStdErr,
        serviceId?}`; lines beyond the rate limit are dropped and counted."""
        principal = require_device(await state.principal(request.headers.get("authorization")),
                                   uuid=uuid)
        device_id = principal.device_id
        limiter = limiters.setdefault(device_id, logstore.RateLimiter(
            rate=state.settings.log_rate_per_s))
        counts = {"accepted": 0, "invalid": 0, "dropped": 0}
        pending: list[dict[str, Any]] = []
        buf = b""

        def take(raw: bytes) -> None:
            if not raw.strip():
                return
            if len(raw) > logstore.MAX_LINE:
                counts["invalid"] += 1
                return
            try:
                line = LogLine.model_validate_json(raw)
            except ValidationError:
                counts["invalid"] += 1
                return
            if limiter.allow():
                pending.append(logstore.row(device_id=device_id, line=line.model_dump(),
                                            now_ms=now_ms()))
            else:
                counts["dropped"] += 1

        skipping = False  # inside a line longer than MAX_LINE: dropped up to its end
        async for chunk in request.stream():
            buf += chunk
            *lines, buf = buf.split(b"\n")
            if skipping and lines:
                lines, skipping = lines[1:], False
            for raw in lines:
                take(raw)
            if not skipping and len(buf) > logstore.MAX_LINE:
                counts["invalid"] += 1
                skipping = True
            if skipping:
                buf = b""
            if pending or limiter.dropped:
                await flush(device_id, pending, limiter)
                counts["accepted"] += len(pending)
                pending = []
        if not skipping:
            take(buf)
        await flush(device_id, pending, limiter)
        counts["accepted"] += len(pending)
        return counts

    async def flush(device_id: int, rows: list[dict[str, Any]],
                    limiter: logstore.RateLimiter) -> None:
        if limiter.dropped and (rows or limiter.allow()):
            rows = [*rows, logstore.suppressed_row(device_id=device_id, count=limiter.dropped,
                                                   now_ms=now_ms())]
            limiter.dropped = 0
        if not rows:
            return
        await state.writer.submit(lambda s: store_logs(s, device_id, rows))
        state.notify_logs(device_id)

    written: dict[int, int] = {}

    def store_logs(s: Session, device_id: int, rows: list[dict[str, Any]]) -> None:
        logstore.insert(s, rows=rows)
        written[device_id] = written.get(device_id, 0) + len(rows)
        if written[device_id] >= 100:
            written[device_id] = 0
            logstore.trim(s, device_id=device_id, keep=state.settings.log_retention_lines,
                          max_age_days=state.settings.log_retention_days, now_ms=now_ms())

    @api.get("/device/v2/{uuid}/logs", responses={200: {"content": {
        "application/x-ndjson": {}, "application/json": {}}}, 401: {}, 403: {}, 404: {}})
    async def read_logs(uuid: str, request: Request, stream: int = Query(0, ge=0, le=1),
                        count: int = Query(1000, ge=0, le=1000),
                        service: str | None = Query(None, max_length=255),
                        access: Access | None = Depends(allow_or_device(state, "device.logs"))
                        ) -> Response:
        """The device's last `count` lines; with `stream=1`, NDJSON that follows new lines.
        For the device's own key or a user holding `device.logs` on it."""
        principal = await state.principal(request.headers.get("authorization"))
        device_id, services, service_id = await run_in_threadpool(
            log_reader, access, principal, uuid, service)
        first = await run_in_threadpool(read_rows, device_id, 0, count, service_id)
        lines = [logstore.to_wire(r, services=services) for r in first]
        if not stream:
            return JSONResponse(lines)
        last = first[-1].id if first else await run_in_threadpool(newest_id, device_id)

        async def follow() -> AsyncIterator[bytes]:
            nonlocal last
            for line in lines:
                yield json.dumps(line).encode() + b"\n"
            while not await request.is_disconnected():
                event = state.log_event(device_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=1.0)
                rows = await run_in_threadpool(read_rows, device_id, last, None, service_id)
                for r in rows:
                    last = r.id
                    yield json.dumps(logstore.to_wire(r, services=services)).encode() + b"\n"

        return StreamingResponse(follow(), media_type="application/x-ndjson")

    def log_reader(access: Access | None, principal: keys.Principal | None, uuid: str,
                   service: str | None) -> tuple[int, dict[int, str], int | None]:
        with state.db.session() as s:
            if access is not None:
                device = access.device(s, uuid)
            else:
                dp = require_device(principal, uuid=uuid)
                found = s.get(t.Device, dp.device_id)
                if found is None:
                    raise unauthorized("this device no longer exists")
                device = found
            services = {sv.id: sv.name for sv in s.execute(sa.select(t.Service).where(
                t.Service.fleet_id == device.fleet_id)).scalars()}
        service_id = None
        if service is not None:
            ids = [i for i, n in services.items() if n == service]
            if not ids:
                raise HTTPException(404, f"no service {service!r} in this device's fleet")
            service_id = ids[0]
        return device.id, services, service_id

    def read_rows(device_id: int, after: int, count: int | None,
                  service_id: int | None) -> list[t.DeviceLog]:
        with state.db.session() as s:
            return logstore.read(s, device_id=device_id, after_id=after, count=count,
                                 service_id=service_id)

    def newest_id(device_id: int) -> int:
        with state.db.session() as s:
            return int(s.execute(sa.select(sa.func.max(t.DeviceLog.id)).where(
                t.DeviceLog.device_id == device_id)).scalar() or 0)

    return api
