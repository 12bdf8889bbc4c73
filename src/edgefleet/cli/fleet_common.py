"""Shared bits of the fleet-server client commands: the client, errors, JSON and times."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import typer
from rich.console import Console

from edgefleet.client import ApiError, FleetClient, load_login
from edgefleet.model.secret_names import redact_urls
from edgefleet.server.status import POLL_VARS

console = Console()
T = TypeVar("T")
JSON_OPT = typer.Option(False, "--json", help="Print JSON (for scripts).")


def fail(message: str) -> None:
    """One line (however wide the terminal), then exit code 1."""
    Console(stderr=True, width=100_000, soft_wrap=True).print(
        f"[red]error:[/] {redact_urls(message)}", highlight=False)
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
        fail(f"{exc}{_what_to_do(exc)}")
    except (OSError, httpx.TransportError) as exc:
        fail(f"cannot reach the fleet server at {login.url} ({exc}): is it running? Start it"
             " (`edgefleet server run`, or `edgefleet up`), or log in to another one with"
             " `edgefleet login --url URL --token TOKEN`")
    finally:
        c.close()


def _what_to_do(exc: ApiError) -> str:
    """The hint after the server's reason, by status."""
    text = str(exc)
    if exc.status == 401:
        return ": the server does not accept your token; log in again with `edgefleet login`"
    if exc.status == 403:
        return ": your token may not do this; ask the fleet's owner or an admin"
    if exc.status == 404 and "no fleet" in text:
        return ": `edgefleet fleet list` shows your fleets"
    if exc.status == 404 and "no device" in text:
        return ": `edgefleet device list` shows your devices (uuid, 7+ characters, or name)"
    if exc.status == 404 and "no release" in text:
        return ": `edgefleet release list FLEET` shows a fleet's releases"
    return ""


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


def poll_note(c: FleetClient, *, fleet: str | None = None, device: str | None = None) -> str:
    """When devices will pick a change up: they poll the server (the tunnel, when it comes,
    makes this near-instant)."""
    from edgefleet.server.status import poll_interval_ms

    try:
        if device is not None:
            fleet = str(c.device(device=device)["fleet"])
        rows = c.variables(fleet=fleet, device=None, kind="config") if fleet else []
        if device is not None:
            rows += c.variables(fleet=None, device=device, kind="config")
    except (ApiError, OSError):
        return "devices pick this up at their next poll"
    config = {v["name"]: v["value"] for v in rows if not v.get("service")}
    if not any(name in config for name in POLL_VARS):
        return ("devices pick this up at their next poll (every appUpdatePollInterval of"
                f" their config.json; {poll_interval_ms(config={}) // 1000} s unless it says"
                " otherwise)")
    seconds = poll_interval_ms(config=config) / 1000
    return f"devices poll every {seconds:g} s: they pick this up within {seconds:g} s"
