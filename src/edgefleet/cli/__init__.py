"""The `edgefleet` command: Typer apps only (parse, call, render). No logic lives here."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from edgefleet import __version__

if TYPE_CHECKING:  # imported when the command tree is built: `preload copy` starts without it
    import typer

# command groups, imported only when used: `edgefleet preload ...` starts without loading
# the fleet client, the server or the supervisor
_GROUPS = {"supervisor": "supervisor_cmd", "server": "server_cmd", "diagnose": "diagnose_cmd",
           "config": "config_cmd", "engine": "engine_cmd", "preload": "preload_cmd"}


def _version(value: bool) -> None:
    import typer

    if value:
        typer.echo(__version__)
        raise typer.Exit()


def _root_callback() -> Callable[..., None]:
    import typer

    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True,
            help="Print the version and exit."
        ),
    ) -> None:
        """edgefleet: supervisor, fleet server, diagnostics and preload in one command."""

    return _root


def build_app(*, only: str | None = None) -> typer.Typer:
    """The command tree; with `only`, just that group (what `main` runs for `edgefleet <group>`)."""
    import typer

    root = typer.Typer(
        name="edgefleet",
        help="Keep multi-container applications running on fleets of Linux edge devices.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    for name, module in _GROUPS.items():
        if only in (None, name):
            root.add_typer(importlib.import_module(f"edgefleet.cli.{module}").app, name=name)
    if only is None:
        from edgefleet.cli import up_cmd

        up_cmd.register(root)  # first: the first panel of `--help` is how to start
        from edgefleet.cli import fleet_cmds

        fleet_cmds.register(root)
        from edgefleet.cli import remote_cmds

        remote_cmds.register(root)
    root.callback()(_root_callback())
    from edgefleet.cli.help_text import decorate

    decorate(root)
    return root


@cache
def _full_app() -> typer.Typer:
    return build_app()


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        return _full_app()
    raise AttributeError(name)


def main() -> None:
    """Console entry point."""
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    first = words[0] if words else None
    if words[:2] == ["supervisor", "run"]:  # a process that runs for months: start it small
        from edgefleet.cli.lean import skip_unused_imports

        skip_unused_imports()
    try:
        if words[:1] == ["preload"]:  # the commands a preload script runs: start without Typer
            from edgefleet.cli.preload_fast import run

            code = run(sys.argv[1:])
            if code is not None:
                sys.exit(code)
        build_app(only=first if first in _GROUPS else None)()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # the one line a user can act on, not a traceback
        from edgefleet.cli.errors import report_and_exit

        report_and_exit(exc)
