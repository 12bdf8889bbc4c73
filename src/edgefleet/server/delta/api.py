"""`GET /api/v3/delta?src=&dest=` (balena's delta endpoint, in spirit): a device asks for the
delta between two images of its own fleet's releases. The first ask starts its generation and
answers 202 with the progress (ask again after Retry-After); then 200 with where to download
it (`GET /api/v3/delta/<key>`, streamed) and what it saves; a client that accepts
`application/octet-stream` gets the ready delta itself instead (its size, the new layers'
size and the image id in `X-Delta-*` headers), saving a round trip. Device API key only."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from edgefleet.server import roles
from edgefleet.server import tables as t
from edgefleet.server.access import unauthorized
from edgefleet.server.authz import allow
from edgefleet.server.delta.service import DeltaService
from edgefleet.server.keys import DevicePrincipal, Principal, UserPrincipal, bearer
from edgefleet.server.state import ServerState

_CHUNK = 1 << 20


def router(*, state: ServerState, service: DeltaService) -> APIRouter:
    api = APIRouter(tags=["device"])

    def who(request: Request) -> Principal:
        key = bearer(request.headers.get("authorization"))
        principal = state.principal_sync(key) if key else None
        if principal is None:
            raise unauthorized()
        return principal

    def device(request: Request) -> DevicePrincipal:
        principal = who(request)
        if not isinstance(principal, DevicePrincipal):
            raise HTTPException(403, "deltas are for devices: use the device's API key")
        return principal

    def in_fleet(fleet_id: int, refs: list[str]) -> set[str]:
        with state.db.session() as s:
            return set(s.execute(sa.select(t.ReleaseImage.ref).join(
                t.Release, t.Release.id == t.ReleaseImage.release_id).where(
                t.Release.fleet_id == fleet_id, t.ReleaseImage.ref.in_(refs))).scalars())

    @api.get("/api/v3/delta", responses={202: {}, 400: {}, 401: {}, 403: {}, 404: {},
                                         502: {}})
    def get_delta(request: Request, src: str = Query(..., max_length=512),
                  dest: str = Query(..., max_length=512)) -> Response:
        """The delta from image `src` to image `dest` (refs as in the target state)."""
        principal = device(request)
        if src == dest:
            raise HTTPException(400, "src and dest are the same image")
        missing = {src, dest} - in_fleet(principal.fleet_id, [src, dest])
        if missing:
            raise HTTPException(404, f"not an image of a release of this device's fleet: "
                                     f"{', '.join(sorted(missing))}")
        job = service.request(src, dest)
        body = job.public()
        if job.status == "failed":
            return JSONResponse({**body, "detail": f"the delta could not be made: {job.error}"},
                                status_code=502)
        if job.status != "ready":
            return JSONResponse(body, status_code=202, headers={"Retry-After": "1"})
        if "application/octet-stream" in request.headers.get("accept", "") \
                and service.path(job.key).exists():  # the delta itself: one round trip
            return send(job.key, {"X-Delta-Size": str(job.size),
                                  "X-Delta-New-Bytes": str(job.new_bytes),
                                  "X-Delta-Image-Id": job.image_id})
        return JSONResponse({**body, "location": f"/api/v3/delta/{job.key}"})

    def send(key: str, headers: dict[str, str]) -> StreamingResponse:
        path = service.path(key)

        def body() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    service.served += len(chunk)
                    yield chunk

        return StreamingResponse(body(), media_type="application/octet-stream",
                                 headers={**headers, "Content-Length": str(path.stat().st_size)})

    @api.get("/api/v3/delta/{key}", responses={401: {}, 403: {}, 404: {}})
    def download(key: str, request: Request) -> StreamingResponse:
        """A ready delta's bytes (counted in the server's delta statistics)."""
        principal = device(request)
        job = service.jobs.get(key)
        if job is None or job.status != "ready" or not service.path(key).exists():
            raise HTTPException(404, f"no ready delta {key!r}: ask GET /api/v3/delta first")
        if {job.src, job.dest} - in_fleet(principal.fleet_id, [job.src, job.dest]):
            raise HTTPException(404, f"no ready delta {key!r} for this device")
        return send(key, {})

    @api.get("/api/v3/delta-stats", tags=["user"], responses={401: {}, 403: {}},
             dependencies=[Depends(allow(state, roles.ADMIN))])
    def stats(request: Request) -> dict[str, object]:
        """Bytes of deltas served by this process, and each delta's size and cost (admin:
        it names images of every fleet)."""
        principal = who(request)
        if not isinstance(principal, UserPrincipal) or not principal.is_admin:
            raise HTTPException(403, "this endpoint needs an admin's user token")
        return {"served_bytes": service.served,
                "deltas": [j.public() for j in service.jobs.values()]}

    return api
