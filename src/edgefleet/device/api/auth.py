"""API keys on requests (compat §5): `?apikey=` or `Authorization: Bearer|ApiKey <key>`; the
global key reaches everything, an app key only its own app; no key needed for `/ping`,
`/v1/healthy`, in local mode or on an unmanaged device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, APIKeyQuery

from edgefleet.device.api.context import ApiContext
from edgefleet.device.api.errors import ApiError
from edgefleet.device.api_keys import GLOBAL

_query = APIKeyQuery(name="apikey", auto_error=False, description="Supervisor API key")
_header = APIKeyHeader(name="Authorization", auto_error=False,
                       description="`Bearer <key>` or `ApiKey <key>`")


@dataclass(frozen=True)
class Caller:
    """Who is calling: every app (global key, or no auth needed) or one app."""

    app_uuid: str | None
    """None: all apps."""
    global_key: bool

    def may(self, app_uuid: str) -> bool:
        return self.app_uuid is None or self.app_uuid == app_uuid


def ctx_of(request: Request) -> ApiContext:
    """The ApiContext of the app serving this request."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


async def _ctx(request: Request) -> ApiContext:
    return ctx_of(request)


def _key(query: str | None, header: str | None) -> str | None:
    if query:
        return query
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() in ("bearer", "apikey") and value.strip():
            return value.strip()
    return None


async def caller(request: Request, query: Annotated[str | None, Depends(_query)],
           header: Annotated[str | None, Depends(_header)]) -> Caller:
    """The dependency every keyed route uses; 401 for a missing or unknown key."""
    ctx = ctx_of(request)
    key = _key(query, header)
    scope = ctx.keys.scope_of(key) if key else None
    if scope is not None:
        return Caller(app_uuid=None if scope == GLOBAL else scope, global_key=scope == GLOBAL)
    if not ctx.auth_required:  # local mode / unmanaged: everything, as with the global key
        return Caller(app_uuid=None, global_key=True)
    raise ApiError(401, "Unauthorized: a valid API key is required (?apikey= or"
                   " Authorization: Bearer <key>)" if key is None else
                   "Unauthorized: unknown API key")


async def global_caller(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """For device-wide endpoints that an app-scoped key must not reach."""
    if not who.global_key:
        raise ApiError(401, "Unauthorized: this endpoint needs the global API key; an app's"
                       " key is scoped to its own app")
    return who


AnyKey = Annotated[Caller, Depends(caller)]
GlobalKey = Annotated[Caller, Depends(global_caller)]
Ctx = Annotated[ApiContext, Depends(_ctx)]
