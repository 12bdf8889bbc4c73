"""The fleet server's settings: where its data lives, its database, registry and timings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSettings:
    """Everything `create_app` needs; built by `edgefleet server run` or by tests."""

    data_dir: Path
    database_url: str | None = None
    """SQLAlchemy URL; None = SQLite at `<data_dir>/server.sqlite`."""
    registry: str | None = None
    """`host:port` of the registry images are pushed to (None = no builds possible)."""
    engine_socket: str = "/var/run/docker.sock"
    """The Docker Engine API socket releases are built on."""
    public_url: str = "http://127.0.0.1:48480"
    """The URL devices use (written as `apiEndpoint` into provisioning config.json)."""
    heartbeat_timeout_s: float | None = None
    """Seconds without a state GET before a device's heartbeat times out. None = compat §4:
    1.5 x max(poll interval, 10 min)."""
    offline_grace_s: float = 15.0
    """After the timeout, seconds until the heartbeat counts as offline (compat §4)."""
    cache_refresh_s: float = 1.0
    """How often a process checks whether another process changed targets (PostgreSQL)."""
    heartbeat_flush_s: float = 2.0
    """How often last-seen times held in memory are written to the database."""
    process_url: str | None = None
    """How other server processes reach this one (several API processes on one PostgreSQL
    forward remote sessions to the process holding the device's tunnel); None = public_url
    (right for one process; `server run` always sets it to its own address)."""
    ssh_port: int | None = None
    """Serve the SSH front door on this port (0 = any free port); None = no SSH server."""
    ssh_host: str = "127.0.0.1"
    tunnel: bool = True
    """Devices keep a tunnel to this server: status tells Online (heartbeat and tunnel) from
    Heartbeat Only. False: status comes from heartbeats alone."""
    log_retention_lines: int = 1000
    log_retention_days: int = 30
    audit_retention_days: int = 365
    """Audit records older than this are removed (checked at start and every 500 records)."""
    log_rate_per_s: float = 200.0
    """Log lines a device may send per second (bucket of 10 s); more are dropped and counted."""
    max_project_bytes: int = 1 * 2**30
    """The most a pushed project may unpack to (the upload itself is capped alike)."""
    build_timeout_s: float = 3600.0
    """A push's build and image push taking longer than this fails."""
    max_pushes: int = 4
    """Pushes (upload, unpack, build, image push) this process runs at once; more get 503."""
    max_pushes_per_user: int = 2
    """Pushes one user may have running at once; more get 429."""
    auth_failures_per_minute: int = 30
    """Requests with a missing or unknown key one source address may make per minute; after
    that the address gets 429 until the minute is over."""

    @property
    def own_url(self) -> str:
        """This process's URL for the other processes."""
        return (self.process_url or self.public_url).rstrip("/")

    @property
    def url(self) -> str:
        """The database URL actually used."""
        return self.database_url or f"sqlite:///{self.data_dir / 'server.sqlite'}"
