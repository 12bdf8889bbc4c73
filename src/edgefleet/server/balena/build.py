"""balena's builder API, `POST /v3/build?slug=...`: the CLI's `balena push <fleet>` uploads
a gzipped tar; the server's own push (`server/pushes.py`) builds it, and the reply streams
a JSON array: `{"type": "metadata", "resource": "buildLogId", "value": <release id>}`, then
`{"message": ..., "isError"?: true}` items."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from edgefleet.server import keys, pushes
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.access import require_user
from edgefleet.server.authz import allow
from edgefleet.server.balena.schema import fleet_slug
from edgefleet.server.rights import Rights
from edgefleet.server.state import ServerState


def message(event: dict[str, Any]) -> dict[str, Any] | None:
    """A push event as a builder message (None: not shown)."""
    kind = event.get("type")
    if kind == "build":
        return {"message": f"[{event['service']}] {event['line']}"}
    if kind == "status":
        return {"message": f"[{event['service']}] {event['message']}"}
    if kind == "pushed":
        return {"message": f"[{event['service']}] pushed {event.get('digest') or ''}".rstrip()}
    if kind == "done":
        if event.get("status") == "success":
            return {"message": f"[Info] Release {event['commit']} built successfully"}
        return {"message": f"[Error] Build failed: {event.get('error')}", "isError": True}
    return None


def router(*, state: ServerState) -> APIRouter:
    api = APIRouter(tags=["balena"])

    def fleet_uuid(user: keys.UserPrincipal, slug: str) -> str:
        with state.db.session() as s:
            rights = Rights.load(s, user)
            rows = [f for f in s.execute(sa.select(t.Fleet).join(
                o.Organization, o.Organization.id == t.Fleet.organization_id).where(
                rights.candidate_fleets(), fleet_slug() == slug.lower())).scalars()
                if rights.check(f, None, "release.push") is not None]
            if not rows:
                raise HTTPException(404, f"no fleet {slug!r} of yours")
            if not rights.check(rows[0], None, "release.push"):
                raise HTTPException(403, f"your role may not release.push on {slug!r}")
            return rows[0].uuid

    @api.post("/v3/build", response_model=None,
              dependencies=[Depends(allow(state, "release.push"))])
    async def build(request: Request, slug: str = Query(..., max_length=300),
                    headless: bool = Query(False), dockerfilePath: str = Query(""),
                    ) -> Response:
        """Build a release of fleet `slug` from the uploaded project."""
        user = require_user(await state.principal(request.headers.get("authorization")))
        if dockerfilePath:
            raise HTTPException(400, "dockerfilePath is not supported by edgefleet's builder")
        slot = await pushes.claim(state=state, user=user)
        try:
            uuid = await run_in_threadpool(fleet_uuid, user, slug)
        except BaseException:
            slot.release()
            raise
        job, project, release_id, target = await pushes.start(
            state=state, user=user, fleet=uuid, request=request, slot=slot)
        if headless:
            return JSONResponse({"started": True, "releaseId": release_id,
                                 "message": f"building release {target.commit}"})

        async def stream() -> AsyncIterator[bytes]:
            yield json.dumps({"type": "metadata", "resource": "buildLogId",
                              "value": release_id}).encode()
            services = [b.service for b in project.builds] + list(project.images)
            yield b"," + json.dumps({"message": f"[Info] Building release {target.commit} "
                                                f"of {slug}: {', '.join(services)}"}).encode()
            while (event := await job.queue.get()) is not None:
                msg = message(event)
                if msg is not None:
                    yield b"," + json.dumps(msg).encode()

        async def array() -> AsyncIterator[bytes]:
            yield b"["
            async for chunk in stream():
                yield chunk
            yield b"]"

        return StreamingResponse(array(), media_type="application/json")

    return api
