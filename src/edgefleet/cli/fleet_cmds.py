"""Fleet-server client commands: login, fleet, device, release, env, logs, push, up."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the fleet-server client commands to the root app."""
