"""Shared bits of the fleet-server client commands: the client, errors, JSON and times."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console

from edgefleet.client import ApiError, FleetClient, load_login

console = Console()
T = TypeVar("T")
JSON_OPT = typer.Option(False, "--json", help="Print JSON (for scripts).")


def fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


@contextmanager
def client() -> Iterator[FleetClient]:
    """A client for the saved login; API errors become a message and exit code 1."""
    login = load_login()
    if login is None:
        fail("not logged in: run `edgefleet login --url URL --token TOKEN` "
             "(or set EDGEFLEET_SERVER and EDGEFLEET_TOKEN)")
        raise AssertionError  # unreachable
    c = FleetClient(login=login)
    try:
        yield c
    except ApiError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot reach {login.url}: {exc}")
    finally:
        c.close()


def call(fn: Callable[[FleetClient], T]) -> T:
    with client() as c:
        return fn(c)
    raise AssertionError  # unreachable: client() exits on errors


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def ago(ms: int | None) -> str:
    """`12s ago`, `3m ago`, `2h ago`, `5d ago`, or `never`."""
    if not ms:
        return "never"
    s = max(0, int(time.time() - ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


def short(commit: str | None) -> str:
    return commit[:10] if commit else "-"


STATUS_STYLE = {"Online": "green", "Heartbeat Only": "green", "VPN Only": "yellow",
                "Offline": "red"}
