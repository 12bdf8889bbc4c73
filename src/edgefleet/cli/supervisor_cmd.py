"""`edgefleet supervisor ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="supervisor commands.", no_args_is_help=True)
