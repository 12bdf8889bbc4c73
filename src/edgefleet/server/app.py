"""The fleet server's ASGI app: device API, user API and the per-process state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.exc import DataError

from edgefleet import __version__
from edgefleet.server import (
    account_api,
    device_api,
    device_pin,
    orgs,
    support_api,
    user_api,
    user_devices,
    user_releases,
)
from edgefleet.server.balena import install as install_balena_api
from edgefleet.server.db import Database
from edgefleet.server.delta import api as delta_api
from edgefleet.server.delta.service import DeltaService
from edgefleet.server.fastpoll import FastPoll
from edgefleet.server.limits import Limits
from edgefleet.server.pushes import fail_interrupted
from edgefleet.server.settings import ServerSettings
from edgefleet.server.state import ServerState


def create_app(*, settings: ServerSettings, db: Database | None = None,
               on_shutdown: Callable[[], None] | None = None) -> FastAPI:
    """Build the app; the database is opened (and migrated) here unless given.
    `on_shutdown` runs when the server stops (e.g. to stop the registry it started)."""
    database = db or Database(url=settings.url)
    state = ServerState(settings=settings, db=database)
    deltas = DeltaService(data_dir=settings.data_dir, registry=settings.registry)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if database.is_sqlite:  # one process owns the database: no build can be running
            fail_interrupted(state)
        state.start()
        try:
            yield
        finally:
            await state.stop()
            deltas.close()
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(title="edgefleet fleet server", version=__version__, lifespan=lifespan)
    app.state.server = state

    @app.exception_handler(DataError)
    async def bad_value(_request: Request, exc: DataError) -> JSONResponse:
        """A value the database cannot hold (a NUL character on PostgreSQL, a number out of
        range): the client's input is at fault, and the transaction was rolled back."""
        reason = str(exc.orig).splitlines()[0] if exc.orig else "invalid value"
        return JSONResponse({"detail": f"a value cannot be stored: {reason}"}, status_code=400)

    @app.get("/ping", response_class=PlainTextResponse, tags=["meta"])
    def ping() -> str:
        """Liveness: `OK`."""
        return "OK"

    app.add_middleware(FastPoll, state=state)
    app.add_middleware(Limits, auth_failures_per_minute=settings.auth_failures_per_minute)
    app.include_router(device_api.router(state=state))
    app.include_router(device_pin.router(state=state))
    app.include_router(delta_api.router(state=state, service=deltas))
    for module in (user_api, user_devices, user_releases, orgs, account_api, support_api):
        app.include_router(module.router(state=state))
    install_balena_api(app, state=state)
    return app
