"""A real fleet server for device-link tests: the server's ASGI app under uvicorn in a thread
of the test process, on 127.0.0.1 (real HTTP, real SQLite), plus user-API helpers."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from edgefleet.server.admin import ensure_admin
from edgefleet.server.app import create_app
from edgefleet.server.db import Database
from edgefleet.server.settings import ServerSettings


def free_port() -> int:
    """A TCP port nothing listens on right now (for servers that must keep their port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A fleet server on `url`; stop() and start() again keep its data and port."""

    data_dir: Path
    port: int = 0
    token: str = ""
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not self.port:
            self.port = free_port()
        settings = ServerSettings(data_dir=self.data_dir, public_url=self.url,
                                  **self.settings_overrides)
        db = Database(url=settings.url)
        token = ensure_admin(db)
        if token:
            self.token = token
        app = create_app(settings=settings, db=db)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fleet server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
        self._server = self._thread = None

    def user(self) -> httpx.Client:
        """A client of the user API (`/api/v1`) as the first admin."""
        return httpx.Client(base_url=f"{self.url}/api/v1", timeout=30,
                            headers={"Authorization": f"Bearer {self.token}"})

    def new_fleet(self, name: str, *, device_type: str = "generic-amd64") -> dict[str, Any]:
        """Create a fleet; returns a provisioning config.json for it."""
        with self.user() as c:
            r = c.post("/fleets", json={"name": name, "device_type": device_type})
            r.raise_for_status()
            r = c.post(f"/fleets/{name}/config", json={"poll_interval_ms": 10_000})
            r.raise_for_status()
            config: dict[str, Any] = r.json()
        config["apiEndpoint"] = self.url
        return config
