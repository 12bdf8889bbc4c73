"""Fleet-server client commands for devices, variables and logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from edgefleet.cli.fleet_common import (
    JSON_OPT,
    STATUS_STYLE,
    ago,
    call,
    client,
    console,
    fail,
    poll_note,
    print_json,
    short,
)
from edgefleet.model.config import save_config
from edgefleet.model.errors import InvalidInput
from edgefleet.model.secret_names import redact_urls

device_app = typer.Typer(help="List, inspect, pin, rename and remove devices; make a "
                              "provisioning config.json.", no_args_is_help=True)
env_app = typer.Typer(help="Environment and configuration variables at fleet, "
                           "fleet+service, device or device+service level.",
                      no_args_is_help=True)
FLEET_OPT = typer.Option(None, "--fleet", "-f", help="Fleet name.")
DEVICE_OPT = typer.Option(None, "--device", "-d", help="Device uuid, prefix or name.")
SERVICE_OPT = typer.Option(None, "--service", "-s", help="Only this service.")
CONFIG_OPT = typer.Option(False, "--config", "-c",
                          help="A configuration variable (e.g. BALENA_SUPERVISOR_POLL_INTERVAL) "
                               "instead of an environment variable.")


def device_table(devices: list[dict[str, Any]]) -> Table:
    table = Table("UUID", "NAME", "FLEET", "STATUS", "LAST SEEN", "RELEASE", "TARGET",
                  "UPDATE", title="devices")
    for d in devices:
        status = f"[{STATUS_STYLE.get(d['status'], '')}]{d['status']}[/]"
        target = short(d["target_release"]) + (" (pinned)" if d["pinned_release"] else "")
        table.add_row(d["uuid"][:10], d["name"], d["fleet"], status, ago(d["last_seen_ms"]),
                      short(d["running_release"]), target, d["update_status"] or "-")
    return table


@device_app.command("list")
def device_list(fleet: str | None = FLEET_OPT, as_json: bool = JSON_OPT) -> None:
    """Your devices (of one fleet with --fleet), with their status."""
    devices = call(lambda c: c.devices(fleet=fleet))
    print_json(devices) if as_json else console.print(device_table(devices))


@device_app.command("show")
def device_show(device: str, as_json: bool = JSON_OPT) -> None:
    """One device: status, releases and what it reported."""
    d = call(lambda c: c.device(device=device))
    if as_json:
        print_json(d)
        return
    console.print(device_table([d]))
    info = Table("FIELD", "VALUE", title="reported")
    for key in ("uuid", "device_type", "reported_status", "heartbeat", "os_version",
                "supervisor_version", "ip_address", "mac_address"):
        info.add_row(key, str(d[key]))
    for key, value in sorted(d["reported"].items()):
        info.add_row(key, str(value))
    console.print(info)
    rel = Table("COMMIT", "UPDATE STATUS", "SERVICES", title="releases")
    for r in d["releases"]:
        rel.add_row(short(r["commit"]), r["update_status"], ", ".join(
            f"{k}: {_service_state(v)}" for k, v in sorted(r["services"].items())))
    console.print(rel)


def _service_state(service: dict[str, Any]) -> str:
    """`Running`, or `Downloading 45%` while its image downloads."""
    status = str(service.get("status", "?"))
    progress = service.get("download_progress")
    if status == "Downloading" and progress is not None:
        return f"{status} {int(progress)}%"
    return status


@device_app.command("pin")
def device_pin(device: str, release: str | None = typer.Argument(
        None, help='A release commit (or prefix); "latest" or "none" unpins.'),
        unpin: bool = typer.Option(False, "--unpin", help="Follow the fleet's target again "
                                   "(also undoes a pin the device made from a preload)."),
        as_json: bool = JSON_OPT) -> None:
    """Pin a device to a release (overrides its fleet's target), or unpin it."""
    if unpin == (release is not None):
        fail("give a release to pin to, or --unpin (not both)")
    wanted = "none" if unpin else release
    d = call(lambda c: c.update_device(device=device, pinned_release=wanted))
    print_json(d) if as_json else console.print(device_table([d]))


@device_app.command("rename")
def device_rename(device: str, name: str, as_json: bool = JSON_OPT) -> None:
    """Give a device a new name."""
    d = call(lambda c: c.update_device(device=device, name=name))
    print_json(d) if as_json else console.print(device_table([d]))


@device_app.command("rm")
def device_rm(device: str, yes: bool = typer.Option(False, "--yes", "-y",
                                                    help="Do not ask.")) -> None:
    """Remove a device from its fleet (its API key stops working)."""
    if not yes:
        typer.confirm(f"remove device {device}?", abort=True)
    call(lambda c: c.delete_device(device=device))
    console.print(f"removed {device}")


@device_app.command("config")
def device_config(
    fleet: str,
    output: Path = typer.Option(..., "--output", "-o", help="Where to write config.json."),
    poll_interval: int = typer.Option(900_000, "--poll-interval",
                                      help="appUpdatePollInterval in ms."),
) -> None:
    """Write a provisioning config.json for a new device of FLEET (like `balena os
    configure`): the supervisor registers itself with it on first start."""
    doc = call(lambda c: c.provisioning_config(fleet=fleet, poll_interval_ms=poll_interval))
    try:
        save_config(path=output, config=doc)
    except InvalidInput as exc:
        fail(str(exc))
    console.print(f"wrote {output} (fleet {doc['applicationName']}, {doc['deviceType']}, "
                  f"server {redact_urls(str(doc['apiEndpoint']))})")


@env_app.command("set")
def env_set(name: str, value: str, fleet: str | None = FLEET_OPT,
            device: str | None = DEVICE_OPT, service: str | None = SERVICE_OPT,
            config: bool = CONFIG_OPT, as_json: bool = JSON_OPT) -> None:
    """Set a variable for a fleet or a device, optionally for one service only."""
    with client() as c:
        v = c.set_variable(kind="config" if config else "env", fleet=fleet, device=device,
                           service=service, name=name, value=value)
        if as_json:
            print_json(v)
            return
        console.print(f"{v['level']} {v['kind']} {v['name']}={v['value']}", highlight=False)
        console.print(poll_note(c, fleet=fleet if device is None else None, device=device),
                      highlight=False)


@env_app.command("list")
def env_list(fleet: str | None = FLEET_OPT, device: str | None = DEVICE_OPT,
             config: bool = CONFIG_OPT, as_json: bool = JSON_OPT) -> None:
    """Variables set on a fleet (with its service-level ones) or on a device."""
    rows = call(lambda c: c.variables(fleet=fleet, device=device,
                                      kind="config" if config else None))
    if as_json:
        print_json(rows)
        return
    table = Table("LEVEL", "KIND", "SERVICE", "NAME", "VALUE")
    for v in rows:
        table.add_row(v["level"], v["kind"], v["service"] or "*", v["name"], v["value"])
    console.print(table)


@env_app.command("rm")
def env_rm(name: str, fleet: str | None = FLEET_OPT, device: str | None = DEVICE_OPT,
           service: str | None = SERVICE_OPT, config: bool = CONFIG_OPT) -> None:
    """Remove a variable from the level named."""
    call(lambda c: c.delete_variable(kind="config" if config else "env", fleet=fleet,
                                     device=device, service=service, name=name))
    console.print(f"removed {name}")


def logs(device: str, follow: bool = typer.Option(False, "--follow", "-f",
                                                  help="Keep printing new lines."),
         service: str | None = SERVICE_OPT,
         count: int = typer.Option(100, "--count", "-n", min=0, max=1000,
                                   help="How many past lines."),
         as_json: bool = JSON_OPT) -> None:
    """A device's logs as the server has them (service output and supervisor events)."""
    with client() as c:
        try:
            for line in c.logs(device=device, count=count, service=service, follow=follow):
                if as_json:
                    typer.echo(json.dumps(line))
                    continue
                ts = datetime.fromtimestamp(line["timestamp"] / 1000, UTC).strftime(
                    "%Y-%m-%d %H:%M:%S")
                who = "[supervisor]" if line["isSystem"] else f"[{line.get('serviceName', '?')}]"
                style = "red" if line["isStdErr"] else ("cyan" if line["isSystem"] else "")
                console.print(f"{ts} {who} {line['message']}", style=style or None,
                              highlight=False, markup=False)
        except KeyboardInterrupt:
            pass


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")
    app.add_typer(env_app, name="env")
    app.command("logs")(logs)
