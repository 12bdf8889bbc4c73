"""The balena API (Pine.js OData `/v7/`, whoami, builder), so the unmodified balena CLI can
drive this server: a translator from a small OData grammar to SQL over edgefleet's tables."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from edgefleet.server.state import ServerState

RECORD_ENV = "EDGEFLEET_BALENA_RECORD"
"""When set, the balena-API requests are appended as JSON lines to this file."""


def install(app: FastAPI, *, state: ServerState) -> None:
    """Add the balena routes (and the request recorder when `RECORD_ENV` is set)."""
    from edgefleet.server.balena import build, provisioning, recorder, routes

    app.include_router(routes.router(state=state))
    app.include_router(build.router(state=state))
    app.include_router(provisioning.router(state=state))
    record = os.environ.get(RECORD_ENV)
    if record:
        app.add_middleware(recorder.Recorder, path=Path(record))
