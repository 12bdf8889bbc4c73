"""The FastAPI application of the supervisor API (balena-compatible, compat §5 and §9)."""

from __future__ import annotations

from fastapi import FastAPI

from edgefleet.device.api import errors, local, openapi_links, v1, v2_apps, v2_device
from edgefleet.device.api.context import ApiContext
from edgefleet.device.api.limits import BodyLimits


def create_app(*, ctx: ApiContext) -> FastAPI:
    """The API app for one supervisor; its OpenAPI document is at `/openapi.json`."""
    app = FastAPI(
        title="edgefleet supervisor API",
        version=ctx.version,
        description="balena-compatible supervisor API. Send the key as `?apikey=` or"
        " `Authorization: Bearer <key>`; `/ping` and `/v1/healthy` need none, nor does a"
        " device in local mode or an unmanaged one.",
    )
    app.state.ctx = ctx
    errors.install(app)
    app.add_middleware(BodyLimits)
    for router in (v1.router, v2_apps.router, v2_device.router, local.router):
        app.include_router(router)
    openapi_links.install(app)
    return app
