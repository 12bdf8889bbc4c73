"""`edgefleet preload ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="preload commands.", no_args_is_help=True)
