"""`edgefleet user passwd`: set a dashboard password (yours, or another user's as an admin)."""

from __future__ import annotations

import sys

import typer

from edgefleet.cli.fleet_common import call, console, fail
from edgefleet.model.secret_names import redact_urls

app = typer.Typer(help="Users of the fleet server (dashboard passwords).",
                       no_args_is_help=True)


@app.command("passwd")
def passwd(
    username: str | None = typer.Argument(None, help="Whose password (default: yours)."),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read the password from standard input."),
) -> None:
    """Set the password a user signs in to the dashboard with (`<server>/ui/`)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        fail("a password needs at least 8 characters")
    who = username or str(call(lambda c: c.whoami())["username"])
    call(lambda c: c.set_password(username=who, password=password))
    url = call(lambda c: c.login.url)
    console.print(f"password set for [bold]{who}[/]; sign in at {redact_urls(url)}/ui/")
