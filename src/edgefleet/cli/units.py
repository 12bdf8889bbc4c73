"""systemd units for `edgefleet supervisor run` and `edgefleet server run`, printed by
`edgefleet supervisor unit` and `edgefleet server unit` with the options given to them (checked
by the `run` command's own parser first, so a typo fails now, not at boot)."""

from __future__ import annotations

import shlex
import sys
from typing import Any

import typer

TEMPLATE = """\
[Unit]
Description=edgefleet {description}
{comment}After={after}
Wants={wants}

[Service]
Type=simple
ExecStart={exec}
Environment=PYTHONUNBUFFERED=1
Restart=always
RestartSec=5
# SIGTERM: it stops its loops (a supervisor leaves the containers running)
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
"""
UNITS = {
    "supervisor": {
        "description": "device supervisor",
        "comment": "# the engine may start later or restart: the supervisor waits for it\n",
        "after": "docker.service network-online.target",
        "wants": "docker.service network-online.target"},
    "server": {
        "description": "fleet server", "comment": "",
        "after": "network-online.target postgresql.service docker.service",
        "wants": "network-online.target"},
}


def add_unit_command(app: typer.Typer, name: str) -> None:
    """`edgefleet NAME unit [RUN OPTIONS]` on the NAME group's `app`."""

    @app.command("unit", context_settings={"allow_extra_args": True,
                                           "ignore_unknown_options": True})
    def unit(ctx: typer.Context) -> None:
        typer.echo(unit_for(ctx, name=name), nl=False)

    unit.__doc__ = (f"Print a systemd unit that runs the {UNITS[name]['description']} at "
                    f"boot and restarts it if it stops: `{name} run` with the options given "
                    "here (checked now), under this Python.")


def exec_line(args: list[str]) -> str:
    """A command line systemd runs as given: shell-style quoting, with systemd's own
    specifiers (%) and variables ($) escaped."""
    return " ".join(shlex.quote(a).replace("%", "%%").replace("$", "$$") for a in args)


def unit_for(ctx: typer.Context, *, name: str) -> str:
    """The unit running `edgefleet NAME run ARGS` with this interpreter; exits 2 with the
    parser's message when ARGS are not valid `run` options."""
    args = list(ctx.args)
    assert ctx.parent is not None
    group: Any = ctx.parent.command  # the `NAME` group (typer's own click)
    try:
        group.get_command(ctx.parent, "run").make_context("run", list(args))
    except Exception as exc:  # click's UsageError / BadParameter / MissingParameter
        reason = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: not valid options of `edgefleet {name} run`: {reason}", err=True)
        raise typer.Exit(2) from None
    command = [sys.executable, "-m", "edgefleet", name, "run", *args]
    return TEMPLATE.format(**UNITS[name], exec=exec_line(command))
