"""The user API for releases: list, show, and push (upload a project, build, stream output)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from edgefleet.server import audit
from edgefleet.server import tables as t
from edgefleet.server.authz import Access, allow
from edgefleet.server.pushes import claim, push
from edgefleet.server.state import ServerState
from edgefleet.server.user_api import ERRORS
from edgefleet.server.user_schemas import ReleaseOut
from edgefleet.server.views import release_out


def router(*, state: ServerState) -> APIRouter:
    """Routes for reading releases."""
    api = APIRouter(prefix="/api/v1", tags=["user"], responses=ERRORS)
    db = state.db

    @api.get("/fleets/{fleet}/releases", response_model=list[ReleaseOut], responses={404: {}})
    def list_releases(fleet: str, a: Access = Depends(allow(state, "release.read"))
                      ) -> list[ReleaseOut]:
        """The fleet's releases, newest first."""
        with db.session() as s:
            f = a.fleet(s, fleet)
            rows = s.execute(sa.select(t.Release).where(t.Release.fleet_id == f.id)
                             .order_by(t.Release.id.desc())).scalars()
            return [release_out(s, release=r) for r in rows]

    @api.get("/releases/{commit}", response_model=ReleaseOut, responses={404: {}, 409: {}})
    def show_release(commit: str, a: Access = Depends(allow(state, "release.read"))
                     ) -> ReleaseOut:
        """One release of the user's fleets by commit or unique prefix."""
        with db.session() as s:
            rights = a.rights(s)
            rows = [r for r, f in s.execute(sa.select(t.Release, t.Fleet).join(
                t.Fleet, t.Fleet.id == t.Release.fleet_id).where(
                rights.candidate_fleets(), t.Release.commit.startswith(commit)).limit(10))
                if rights.check(f, None, a.permission) is not None]
            exact = [r for r in rows if r.commit == commit]
            rows = exact or rows
            if not rows:
                raise HTTPException(404, f"no release {commit!r}")
            if len(rows) > 1:
                raise HTTPException(409, f"{commit!r} names more than one release")
            fleet = s.get(t.Fleet, rows[0].fleet_id)
            assert fleet is not None
            a.fleet(s, fleet.uuid)  # 403 when visible without the permission
            return release_out(s, release=rows[0])

    @api.post("/fleets/{fleet}/releases", response_class=StreamingResponse, responses={
        200: {"description": "NDJSON build events, ending with {type: done, commit, status,"
                             " error}", "content": {"application/x-ndjson": {}}},
        400: {"description": "Not a usable project (nothing is recorded)"},
        404: {}, 409: {"description": "No registry configured"}, 413: {},
        429: {"description": "This user already runs as many pushes as allowed (Retry-After)"},
        503: {"description": "The server already runs as many pushes as allowed "
                             "(Retry-After)"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}})
    async def push_release(fleet: str, request: Request,
                           a: Access = Depends(allow(state, "release.push"))
                           ) -> StreamingResponse:
        """Push a project (a tar of a compose project or a single Dockerfile /
        Dockerfile.template): the server records a release, builds and pushes its images,
        and streams the build output. A failed build gives a failed release that no device
        ever gets."""
        slot = await claim(state=state, user=a.user)  # before the audit: a refused push is none
        try:
            await run_in_threadpool(record_push, a, fleet)
        except BaseException:
            slot.release()
            raise
        return await push(state=state, user=a.user, fleet=fleet, request=request, slot=slot)

    def record_push(a: Access, fleet: str) -> None:
        with db.session() as s:
            f = a.fleet(s, fleet)
            audit.record(s, actor=a.user.username, action="release.push", fleet=f,
                         target=f.name)

    return api
