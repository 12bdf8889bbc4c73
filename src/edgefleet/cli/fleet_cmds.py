"""Fleet-server client commands: login, fleet, release, push (device, env and logs live in
`device_cmds`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgefleet.cli import device_cmds, team_cmds
from edgefleet.cli.fleet_common import (
    JSON_OPT,
    ago,
    call,
    client,
    console,
    fail,
    poll_note,
    print_json,
    short,
)
from edgefleet.cli.push_view import PushView
from edgefleet.client import FleetClient, Login, save_login
from edgefleet.model.secret_names import redact_urls

fleet_app = typer.Typer(help="Create and inspect fleets.", no_args_is_help=True)
release_app = typer.Typer(help="Inspect releases.", no_args_is_help=True)


def login(
    url: str = typer.Option(..., "--url", help="The fleet server, e.g. http://127.0.0.1:48480."),
    token: str = typer.Option(..., "--token", help="Your API token (the first admin's is "
                                                   "printed when the server first starts)."),
) -> None:
    """Check a token against the server and save both (~/.config/edgefleet/client.json)."""
    c = FleetClient(login=Login(url=url, token=token))
    try:
        me = c.whoami()
    except Exception as exc:
        fail(f"login failed: {exc}")
        raise
    finally:
        c.close()
    save_login(Login(url=url, token=token))
    console.print(f"logged in to {redact_urls(url)} as [bold]{me['username']}[/]")


def _fleet_table(fleets: list[dict[str, Any]]) -> Table:
    table = Table("NAME", "DEVICE TYPE", "TARGET", "RELEASE", "DEVICES", "UUID")
    for f in fleets:
        table.add_row(f["name"], f["device_type"], short(f["target_release"])
                      if f["target_release"] != "latest" else "latest",
                      short(f["release"]), str(f["device_count"]), f["uuid"])
    return table


@fleet_app.command("create")
def fleet_create(name: str, device_type: str = typer.Option(
        "generic-amd64", "--type", "-t", help="Device type (generic-amd64, raspberrypi4-64, "
                                              "...)."),
                 org: str | None = typer.Option(None, "--org", help="In this organization "
                                                "(default: your personal one)."),
                 as_json: bool = JSON_OPT) -> None:
    """Create a fleet."""
    f = call(lambda c: c.create_fleet(name=name, device_type=device_type, organization=org))
    print_json(f) if as_json else console.print(_fleet_table([f]))


@fleet_app.command("list")
def fleet_list(as_json: bool = JSON_OPT) -> None:
    """Your fleets."""
    fleets = call(lambda c: c.fleets())
    print_json(fleets) if as_json else console.print(_fleet_table(fleets))


@fleet_app.command("show")
def fleet_show(name: str, as_json: bool = JSON_OPT) -> None:
    """A fleet with its devices and releases."""
    with client() as c:
        f, devices, releases = (c.fleet(name=name), c.devices(fleet=name),
                                c.releases(fleet=name))
    if as_json:
        print_json({**f, "devices": devices, "releases": releases})
        return
    console.print(_fleet_table([f]))
    console.print(device_cmds.device_table(devices))
    console.print(_release_table(releases[:10]))


@fleet_app.command("pin")
def fleet_pin(name: str, release: str = typer.Argument(
        ..., help='A release commit (or prefix), or "latest".'), as_json: bool = JSON_OPT
        ) -> None:
    """Set the release a fleet's devices run: a commit, or "latest" to follow pushes."""
    f = call(lambda c: c.set_fleet_release(name=name, release=release))
    print_json(f) if as_json else console.print(_fleet_table([f]))


def _release_table(releases: list[dict[str, Any]]) -> Table:
    table = Table("COMMIT", "FLEET", "STATUS", "CREATED", "SERVICES", title="releases")
    style = {"success": "green", "failed": "red", "building": "yellow"}
    for r in releases:
        table.add_row(short(r["commit"]), r["fleet"],
                      f"[{style.get(r['status'], '')}]{r['status']}[/]", ago(r["created_ms"]),
                      ", ".join(i["service"] for i in r["images"]))
    return table


@release_app.command("list")
def release_list(fleet: str, as_json: bool = JSON_OPT) -> None:
    """A fleet's releases, newest first."""
    releases = call(lambda c: c.releases(fleet=fleet))
    print_json(releases) if as_json else console.print(_release_table(releases))


@release_app.command("show")
def release_show(commit: str, as_json: bool = JSON_OPT) -> None:
    """One release: status, images and digests, error."""
    r = call(lambda c: c.release(commit=commit))
    if as_json:
        print_json(r)
        return
    console.print(_release_table([r]))
    table = Table("SERVICE", "IMAGE ID", "IMAGE", title="images")
    for i in r["images"]:
        table.add_row(i["service"], str(i["image_id"]), i["ref"])
    console.print(table)
    if r["error"]:
        console.print(f"[red]error:[/] {r['error']}", highlight=False)


def push(fleet: str, source: Path = typer.Argument(
        Path("."), help="Project directory: docker-compose.yml, or a Dockerfile / "
                        "Dockerfile.template."), as_json: bool = JSON_OPT) -> None:
    """Send a project to the server, which builds it, pushes the images and makes a release.

    Build output streams back; the exit code is 1 when the build fails.
    """
    if not source.is_dir():
        fail(f"{source} is not a directory")
    done: dict[str, Any] = {}
    with client() as c:
        if as_json:
            for event in c.push(fleet=fleet, source=source):
                typer.echo(json.dumps(event))
                done = event
        else:
            done = _push_progress(c, fleet, source)
            if done.get("status") == "success":
                console.print(poll_note(c, fleet=fleet), highlight=False)
    if done.get("status") != "success":
        raise typer.Exit(1)


def _push_progress(c: FleetClient, fleet: str, source: Path) -> dict[str, Any]:
    done: dict[str, Any] = {}
    with PushView(console=console) as view:
        for e in c.push(fleet=fleet, source=source):
            view.handle(e)
            if e["type"] == "done":
                done = e
    if done.get("status") == "success":
        console.print(f"[green]release {done['commit']} built and pushed[/]")
    else:
        console.print(f"[red]build failed:[/] {done.get('error', 'no result')}",
                      highlight=False)
    return done


def register(app: typer.Typer) -> None:
    """Add the fleet-server client commands to the root app."""
    app.command("login")(login)
    app.command("push")(push)
    app.add_typer(fleet_app, name="fleet")
    app.add_typer(release_app, name="release")
    device_cmds.register(app)
    team_cmds.register(app, device_cmds.device_app)
