"""The `edgefleet` command: Typer apps only (parse, call, render). No logic lives here."""

from __future__ import annotations

import typer

from edgefleet import __version__
from edgefleet.cli import (
    config_cmd,
    diagnose_cmd,
    engine_cmd,
    fleet_cmds,
    preload_cmd,
    server_cmd,
    supervisor_cmd,
    up_cmd,
)

app = typer.Typer(
    name="edgefleet",
    help="Keep multi-container applications running on fleets of Linux edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(supervisor_cmd.app, name="supervisor")
app.add_typer(server_cmd.app, name="server")
app.add_typer(diagnose_cmd.app, name="diagnose")
app.add_typer(config_cmd.app, name="config")
app.add_typer(engine_cmd.app, name="engine")
app.add_typer(preload_cmd.app, name="preload")
fleet_cmds.register(app)
up_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """edgefleet: supervisor, fleet server, diagnostics and preload in one command."""


def main() -> None:
    """Console entry point."""
    app()
