"""The fleet server's ASGI app: device API, user API and the per-process state."""

from __future__ import annotations

import asyncio
import contextlib
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
    openapi_links,
    orgs,
    support_api,
    user_api,
    user_devices,
    user_releases,
)
from edgefleet.server.balena import install as install_balena_api
from edgefleet.server.balena import relay as balena_relay
from edgefleet.server.db import Database
from edgefleet.server.delta import api as delta_api
from edgefleet.server.delta.service import DeltaService
from edgefleet.server.delta.warm import warm_loop
from edgefleet.server.fastpoll import FastPoll
from edgefleet.server.limits import Limits
from edgefleet.server.push_cluster import ClusterSlots
from edgefleet.server.pushes import fail_interrupted
from edgefleet.server.settings import ServerSettings
from edgefleet.server.state import ServerState
from edgefleet.server.tunnel import actions as tunnel_actions
from edgefleet.server.tunnel import routes as tunnel_routes
from edgefleet.server.tunnel import ssh_keys
from edgefleet.server.tunnel.hub import TunnelHub, forget_host, forget_stale_links
from edgefleet.server.web import install as install_dashboard


def create_app(*, settings: ServerSettings, db: Database | None = None,
               on_shutdown: Callable[[], None] | None = None) -> FastAPI:
    """Build the app; the database is opened (and migrated) here unless given.
    `on_shutdown` runs when the server stops (e.g. to stop the registry it started)."""
    database = db or Database(url=settings.url)
    state = ServerState(settings=settings, db=database)
    state.pushes.cluster = ClusterSlots.for_url(database.url)  # caps across processes
    deltas = DeltaService(data_dir=settings.data_dir, registry=settings.registry)
    hub = TunnelHub(state=state)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if database.is_sqlite:  # one process owns the database: no build can be running
            fail_interrupted(state)
            forget_stale_links(database)
        else:  # this process's tunnels from before a crash or restart are gone
            forget_host(database, settings.own_url)
        state.start()
        hub.start()
        warming = asyncio.create_task(warm_loop(state, deltas))  # deltas made before asked
        sshd = None
        if settings.ssh_port is not None:
            from edgefleet.server.tunnel.sshd import SshFrontDoor

            sshd = SshFrontDoor(state=state, hub=hub, host=settings.ssh_host,
                                port=settings.ssh_port,
                                host_key=settings.data_dir / "ssh_host_ed25519_key")
            await sshd.start()
            app.state.ssh_port = sshd.port
        try:
            yield
        finally:
            if sshd is not None:
                await sshd.stop()
            await hub.stop()
            warming.cancel()
            if state.pushes.cluster is not None:
                state.pushes.cluster.close()
            with contextlib.suppress(asyncio.CancelledError):
                await warming
            await state.stop()
            deltas.close()
            if on_shutdown is not None:
                on_shutdown()

    app = FastAPI(title="edgefleet fleet server", version=__version__, lifespan=lifespan)
    app.state.server = state
    install_dashboard(app, state=state)
    app.state.tunnel = hub

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
    app.include_router(tunnel_routes.router(state=state, hub=hub))
    app.include_router(tunnel_actions.router(state=state, hub=hub))
    app.include_router(balena_relay.router(state=state, hub=hub))
    for module in (user_api, user_devices, user_releases, orgs, account_api, support_api,
                   ssh_keys):
        app.include_router(module.router(state=state))
    install_balena_api(app, state=state)
    openapi_links.install(app)
    return app
