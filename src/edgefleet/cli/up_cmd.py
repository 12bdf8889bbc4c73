"""`edgefleet up`: a fleet server, its registry and a local device, with the example pushed."""

from __future__ import annotations

from pathlib import Path

import typer

HELP = (
    "Start a fleet server, a registry and a local device; push the example release.\n\n"
    "The server (SQLite in the data dir) starts its own docker-registry; the device is a "
    "supervisor on the local engine, provisioned into fleet `example` from a provisioning "
    "config.json. The example two-service project is pushed, and once the device runs it the "
    "command prints where to look, logs the CLI in to the server (unless it is logged in "
    "elsewhere) and prints commands to try.\n\nRuns until Ctrl-C or SIGTERM (which stop the "
    "device and the server); running it again reuses the server, fleet and device it made; "
    "--reset starts over.\n\nExample: edgefleet up --data-dir /tmp/up"
)


def up(
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet-up"), "--data-dir",
                                  help="Where the server, the device and their logs live."),
    example: Path = typer.Option(Path("examples/multicontainer"), "--example",
                                 help="The project pushed as the first release."),
    fleet: str = typer.Option("example", "--fleet", help="Name of the fleet to create."),
    port: int = typer.Option(48480, "--port", help="Port of the fleet server."),
    registry_port: int = typer.Option(48490, "--registry-port",
                                      help="Port of the registry the server starts."),
    api_port: int = typer.Option(48484, "--api-port",
                                 help="The local device's supervisor API port (listenPort)."),
    engine_socket: str = typer.Option("/var/run/docker.sock", "--engine-socket",
                                      help="The local container engine (the device's)."),
    reset: bool = typer.Option(False, "--reset", help="Start over: remove the data dir and "
                               "the device's containers, volumes and networks first."),
) -> None:
    """Start a fleet server, a registry and a local device; push the example release."""
    from edgefleet.up import UpError, UpOptions, run_up
    from edgefleet.up import reset as reset_up

    if not example.is_dir():
        typer.echo(f"error: {example} is not a directory (run from the repository, or pass"
                   " --example)", err=True)
        raise typer.Exit(2)
    options = UpOptions(data_dir=data_dir, example=example, fleet=fleet, port=port,
                        registry_port=registry_port, api_port=api_port,
                        engine_socket=engine_socket)
    try:
        if reset:
            reset_up(options=options, say=typer.echo)
        run_up(options=options, say=typer.echo)
    except UpError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("[up] stopped")


def register(app: typer.Typer) -> None:
    """Add `up` to the root app."""
    app.command(name="up", help=HELP)(up)
