"""systemd units for `edgefleet supervisor run` and `edgefleet server run`, printed by
`edgefleet supervisor unit` and `edgefleet server unit` with the options given to them (checked
by the `run` command's own parser first, so a typo fails now, not at boot)."""

from __future__ import annotations

import shlex
import sys
from typing import Any

import typer

SUPERVISOR = """\
[Unit]
Description=edgefleet device supervisor
# the engine may start later or restart: the supervisor waits for it and carries on
After=docker.service network-online.target
Wants=docker.service network-online.target

[Service]
Type=simple
ExecStart={exec}
Environment=PYTHONUNBUFFERED=1
Restart=always
RestartSec=5
# SIGTERM: the supervisor stops its loops and leaves the containers running
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
"""

SERVER = """\
[Unit]
Description=edgefleet fleet server
After=network-online.target postgresql.service docker.service
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec}
Environment=PYTHONUNBUFFERED=1
Restart=always
RestartSec=5
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
"""


def exec_line(args: list[str]) -> str:
    """A command line systemd runs as given: shell-style quoting, with systemd's own
    specifiers (%) and variables ($) escaped."""
    return " ".join(shlex.quote(a).replace("%", "%%").replace("$", "$$") for a in args)


def unit_for(ctx: typer.Context, *, name: str, template: str) -> str:
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
    return template.format(exec=exec_line([sys.executable, "-m", "edgefleet", name, "run",
                                           *args]))
