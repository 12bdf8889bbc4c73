"""The balena API's routes: `/actor/v1/whoami`, the Pine.js OData API under `/v7/`, and
`/api-key/v2/` (provisioning keys), answered from edgefleet's own tables."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from edgefleet.server import keys, roles
from edgefleet.server.access import require_user
from edgefleet.server.authz import allow
from edgefleet.server.balena import write
from edgefleet.server.balena.computed import device_computer
from edgefleet.server.balena.odata import ODataError, Query, parse_query
from edgefleet.server.balena.read import ReadContext, read
from edgefleet.server.balena.write import UNIQUE
from edgefleet.server.balena.write_release import IGNORED
from edgefleet.server.state import ServerState


def odata_error(exc: ODataError) -> Response:
    """OData's error shape (plus a top-level `message`, which balena-request shows). A
    unique-key conflict is plain text, as Pine sends it: pinejs-client's upsert matches
    /unique/ against the body."""
    if exc.status == 409 and "nique" in str(exc):
        return PlainTextResponse(str(exc), status_code=409)
    return JSONResponse({"error": {"code": exc.code, "message": str(exc)}, "message": str(exc)},
                        status_code=exc.status)


def as_odata(exc: HTTPException) -> ODataError:
    codes = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
             409: "Conflict"}
    return ODataError(str(exc.detail), status=exc.status_code,
                      code=codes.get(exc.status_code, "Error"))


def router(*, state: ServerState) -> APIRouter:
    api = APIRouter(tags=["balena"])
    db = state.db
    compute = device_computer(state)

    async def user_of(request: Request) -> keys.UserPrincipal:
        return require_user(await state.principal(request.headers.get("authorization")))

    @api.get("/actor/v1/whoami", dependencies=[Depends(allow(state, roles.ACCOUNT))])
    async def whoami(request: Request) -> dict[str, Any]:
        """The actor behind the token, as balena's SDK reads it (`balena whoami`)."""
        user = await user_of(request)
        return {"id": user.user_id, "actorType": "user", "actorTypeId": user.user_id,
                "username": user.username, "email": None}

    def run_read(query: Query, user_id: int) -> Any:
        with db.session() as s:
            return read(s, query=query, ctx=ReadContext(user_id=user_id, compute=compute))

    def run_write(method: str, query: Query, body: dict[str, Any], user_id: int) -> Any:
        try:
            return write_once(method, query, body, user_id)
        except IntegrityError:
            raise ODataError(f"{UNIQUE}: {query.resource} (another row has these values)",
                             status=409, code="Conflict") from None

    def write_once(method: str, query: Query, body: dict[str, Any], user_id: int) -> Any:
        write.PERMISSION.set(write.permission_for(method, query.resource))
        with db.writing() as s:
            if method == "POST":
                if query.key is not None:
                    raise ODataError("POST goes to the collection, without a key")
                new_id = write.create(s, resource=query.resource, body=body, user_id=user_id,
                                      registry=state.settings.registry)
            else:
                ids = write.matching_ids(s, query=query, user_id=user_id)
                if method == "PATCH":
                    write.update(s, resource=query.resource, ids=ids, body=body,
                                 user_id=user_id)
                else:
                    write.delete(s, resource=query.resource, ids=ids, user_id=user_id)
                new_id = None
            db.bump_generation(s, keys=method == "DELETE" or "belongs_to__application" in body)
        state.refresh_generation()
        if new_id is None:
            return None
        if query.resource in IGNORED:
            return {"id": new_id, **body}
        rows = run_read(Query(resource=query.resource, key=new_id), user_id)
        return rows[0] if rows else {"id": new_id}

    async def v7(path: str, request: Request) -> Response:
        """The Pine.js OData API (the subset the balena CLI uses)."""
        try:
            user = await user_of(request)
            query = parse_query(path=request.url.path.split("/v7/", 1)[1],
                                raw_query=request.url.query)
            if request.method == "GET":
                result = await run_in_threadpool(run_read, query, user.user_id)
                return JSONResponse({"d": result})
            if request.method == "PUT":
                raise ODataError("PUT is not supported: use PATCH", status=405,
                                 code="MethodNotAllowed")
            body: Any = {}
            if request.method in ("POST", "PATCH"):
                try:
                    body = json.loads(await request.body() or b"{}")
                except ValueError:
                    raise ODataError("the body is not JSON") from None
                if not isinstance(body, dict):
                    raise ODataError("the body must be a JSON object")
            created = await run_in_threadpool(run_write, request.method, query, body,
                                              user.user_id)
            if request.method == "POST":
                return JSONResponse(created, status_code=201)
            return PlainTextResponse("OK")
        except ODataError as exc:
            return odata_error(exc)
        except RecursionError:  # a pathological query the depth limit did not catch
            return odata_error(ODataError("the query is nested too deeply"))
        except HTTPException as exc:
            if exc.status_code == 401:
                raise
            return odata_error(as_odata(exc))

    for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        # reads: each resource shows the rows of the user's organizations; writes: the
        # resource's permission from `write.WRITE_PERMISSIONS`, on the fleet it touches
        perm = "fleet.read" if method == "GET" else roles.ACCOUNT_WRITE
        api.add_api_route("/v7/{path:path}", v7, methods=[method], response_model=None,
                          operation_id=f"balena_v7_{method.lower()}",
                          dependencies=[Depends(allow(state, perm))])
    return api
