"""`edgefleet server ...`: run the fleet server."""

from __future__ import annotations

from pathlib import Path

import typer

from edgefleet.cli.units import add_unit_command

app = typer.Typer(help="Run the fleet server (fleets, releases, variables, device link).",
                  no_args_is_help=True)


def _default_url(host: str, port: int) -> str:
    """The URL devices should use when --public-url is not given."""
    import socket

    if host in ("0.0.0.0", "::", ""):  # listening everywhere: name this machine
        host = socket.getfqdn()
    return f"http://{host}:{port}"


def _port_taken(host: str, port: int) -> str:
    """Why (host, port) cannot be listened on, or "" when it can (checked before anything
    is set up, so a taken port changes nothing)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


@app.command()
def run(
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet-server"), "--data-dir",
                                  help="Server data: SQLite database, registry storage."),
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="EDGEFLEET_DATABASE_URL",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db (default: SQLite in "
             "the data dir)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(48480, "--port", help="Port to listen on."),
    public_url: str | None = typer.Option(
        None, "--public-url", help="URL devices use (apiEndpoint in config.json); default "
                                   "http://HOST:PORT."),
    process_url: str | None = typer.Option(
        None, "--process-url", envvar="EDGEFLEET_PROCESS_URL",
        help="How the other server processes on the same database reach this one (they "
             "forward remote sessions to the process holding a device's tunnel); default "
             "http://HOST:PORT. Never the public URL: behind a load balancer it reaches any "
             "process."),
    registry: str | None = typer.Option(
        None, "--registry", help="HOST:PORT of an existing registry (devices pull from this "
                                 "name); default: start Debian's docker-registry on "
                                 "127.0.0.1 with storage in the data dir."),
    no_registry: bool = typer.Option(False, "--no-registry",
                                     help="No registry: pushes that build images are refused "
                                          "(releases of existing images still work)."),
    registry_port: int = typer.Option(0, "--registry-port",
                                      help="Port of the registry the server starts (0 = any)."),
    engine_socket: str = typer.Option("/var/run/docker.sock", "--engine-socket",
                                      help="Docker Engine API socket releases are built on."),
    heartbeat_timeout: float | None = typer.Option(
        None, "--heartbeat-timeout",
        help="Seconds without a poll before a device's heartbeat times out (default 1.5 x "
             "max(poll interval, 10 min))."),
    offline_grace: float = typer.Option(15.0, "--offline-grace",
                                        help="Seconds from timeout to Offline."),
    max_project_size: int = typer.Option(
        1024, "--max-project-size", min=1,
        help="MiB a pushed project may unpack to (its upload is capped alike)."),
    build_timeout: float = typer.Option(3600.0, "--build-timeout", min=1,
                                        help="Seconds a push's build may take."),
    max_pushes: int = typer.Option(
        4, "--max-pushes", min=1,
        help="Pushes (upload, unpack, build) the server runs at once; more are refused with "
             "503 and Retry-After, the running ones go on."),
    max_pushes_per_user: int = typer.Option(
        2, "--max-pushes-per-user", min=1,
        help="Pushes one user may have running at once; more are refused with 429 and "
             "Retry-After."),
    admin_token_file: Path | None = typer.Option(
        None, "--admin-token-file", help="Also write the first admin's token here (mode 600)."),
    ssh_port: int | None = typer.Option(
        None, "--ssh-port", help="Also serve the SSH front door on this port: `ssh -p PORT "
                                 "USER@SERVER host <uuid>` with a key from `edgefleet key add`."),
) -> None:
    """Serve the fleet server's device API and user API until interrupted.

    On first start a user `admin` is created and its token printed once.
    """
    from edgefleet.server.registry import RegistryError
    from edgefleet.server.run import serve
    from edgefleet.server.settings import ServerSettings

    taken = _port_taken(host, port)
    if taken:
        typer.echo(f"error: cannot listen on {host}:{port} ({taken}): another program (an"
                   " `edgefleet server` or `edgefleet up`?) uses it; stop it, or pass --port",
                   err=True)
        raise typer.Exit(2)

    settings = ServerSettings(
        data_dir=data_dir, database_url=database_url, registry=registry,
        engine_socket=engine_socket, public_url=public_url or _default_url(host, port),
        heartbeat_timeout_s=heartbeat_timeout, offline_grace_s=offline_grace,
        max_project_bytes=max_project_size * 2**20, build_timeout_s=build_timeout,
        max_pushes=max_pushes, max_pushes_per_user=max_pushes_per_user,
        ssh_port=ssh_port, ssh_host=host, process_url=process_url or _default_url(host, port))
    try:
        serve(settings=settings, host=host, port=port,
              own_registry=registry is None and not no_registry,
              registry_port=registry_port, admin_token_file=admin_token_file,
              say=lambda m: typer.echo(m))
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


add_unit_command(app, "server")
