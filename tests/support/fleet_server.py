"""Run a real fleet server (uvicorn on a loopback port) in a thread, for tests."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from edgefleet.server.admin import ensure_admin
from edgefleet.server.app import create_app
from edgefleet.server.db import Database
from edgefleet.server.settings import ServerSettings

PG_URL = os.environ.get("EDGEFLEET_TEST_PG_URL", "")


@dataclass
class RunningServer:
    """A started server: its URL, the admin token, and its settings."""

    url: str
    admin_token: str
    settings: ServerSettings
    db: Database
    state: Any
    """The app's `ServerState` (to refresh caches after writing to the database directly)."""

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def pg_schema_url(base: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one run (dropped afterwards): parallel runs never meet."""
    import psycopg

    name = f"ef_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@contextmanager
def run_server(*, data_dir: Path, database_url: str | None = None, registry: str | None = None,
               heartbeat_timeout_s: float | None = None, offline_grace_s: float = 15.0,
               log_rate_per_s: float = 200.0, log_retention_lines: int = 1000
               ) -> Iterator[RunningServer]:
    """Start a server on 127.0.0.1:<ephemeral> in a thread; stop it afterwards."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = ServerSettings(data_dir=data_dir, database_url=database_url, registry=registry,
                              public_url=f"http://127.0.0.1:{port}",
                              heartbeat_timeout_s=heartbeat_timeout_s,
                              offline_grace_s=offline_grace_s, cache_refresh_s=0.5,
                              heartbeat_flush_s=0.5, log_rate_per_s=log_rate_per_s,
                              log_retention_lines=log_retention_lines,
                              # tests of 401s share one address: tests/security test the brake
                              auth_failures_per_minute=1_000_000)
    db = Database(url=settings.url)
    token = ensure_admin(db) or ""
    app = create_app(settings=settings, db=db)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fleet server did not start")
        time.sleep(0.02)
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", admin_token=token,
                            settings=settings, db=db, state=app.state.server)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        db.close()
