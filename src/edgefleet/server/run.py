"""`edgefleet server run`: open the database, make the first admin, start or reach the
registry, and serve the API with uvicorn."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import uvicorn

from edgefleet.model.secret_names import redact_urls
from edgefleet.server.admin import ensure_admin
from edgefleet.server.app import create_app
from edgefleet.server.db import Database
from edgefleet.server.registry import OwnRegistry, RegistryError, registry_up, start_registry
from edgefleet.server.settings import ServerSettings
from edgefleet.server.wsprotocol import websocket_protocol
from edgefleet.tunnel.process import tune_malloc


def write_secret(*, path: Path, text: str) -> None:
    """Write a secret readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file was there before
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


def serve(*, settings: ServerSettings, host: str, port: int, own_registry: bool,
          registry_port: int = 0, admin_token_file: Path | None = None,
          say: Callable[[str], None] = print) -> None:
    """Run the server until interrupted (the registry it started stops with it). What it
    says may go to a log: the credentials of URLs in it are redacted."""

    def tell(message: str) -> None:
        say(redact_urls(message))

    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = Database(url=settings.url)
    token = ensure_admin(db)
    if token and admin_token_file is not None:  # output may go to a log: no token there
        write_secret(path=admin_token_file, text=token)
        tell(f"first start: created user 'admin'; its API token is in {admin_token_file} "
             "(mode 600)")
    elif token:
        tell(f"first start: created user 'admin'; its API token (shown once): {token}")
    registry: OwnRegistry | None = None
    if own_registry:
        registry = start_registry(data_dir=settings.data_dir, port=registry_port)
        settings = replace(settings, registry=registry.address)
        tell(f"registry: docker-registry on {registry.address} (data in "
             f"{settings.data_dir / 'registry'})")
    elif settings.registry and not registry_up(settings.registry):
        raise RegistryError(f"the registry {settings.registry} does not answer GET /v2/")
    tell(f"fleet server: {settings.public_url} (database {settings.url})")
    tune_malloc()  # the server relays tunnel bytes
    try:
        # uvicorn re-raises SIGTERM after shutting down, so the registry is stopped from the
        # app's shutdown, not from a `finally` here
        uvicorn.run(create_app(settings=settings, db=db,
                               on_shutdown=registry.stop if registry else None),
                    host=host, port=port, ws=websocket_protocol(),
                    log_level="warning", access_log=False)
    finally:
        if registry is not None:
            registry.stop()
        db.close()

