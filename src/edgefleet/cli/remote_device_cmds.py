"""`edgefleet device restart|start-service|stop-service|reboot|shutdown|purge|identify|
diagnose|diagnostics`: the device's supervisor, reached through the server's tunnel."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from edgefleet.cli.device_cmds import device_app
from edgefleet.cli.fleet_common import JSON_OPT, call, console, fail, print_json

YES_OPT = typer.Option(False, "--yes", "-y", help="Do not ask (for scripts).")
SERVICE_OPT = typer.Option(None, "--service", "-s", help="Only this service.")
NOTE_OPT = typer.Option(None, "--note", "-m", help="Why (recorded in the audit trail; a "
                                                   "support agent must give one).")


def _services(device: dict[str, Any]) -> list[str]:
    running = device.get("running_release")
    for rel in device.get("releases", []):
        if rel["commit"] == running:
            return sorted(rel["services"])
    return []


def _confirm(device: str, action: str, what: str, yes: bool) -> dict[str, Any]:
    d = call(lambda c: c.device(device=device))
    if not yes:
        services = ", ".join(_services(d)) or "no services known"
        name = f"{d['name']} ({d['uuid'][:7]}, {d['status']})"
        typer.confirm(f"{action} device {name}: {what.format(services=services)}. Continue?",
                      abort=True)
    return d


def _act(device: str, action: str, service: str | None = None, force: bool = False,
         note: str | None = None) -> None:
    """Run the action; reached only after `_confirm` (or for actions that stop nothing), so
    the confirmation the server records is this one."""
    body: dict[str, Any] = {"service": service, "force": force, "confirm": True,
                            "note": note}
    reply = call(lambda c: c.remote("POST", f"/devices/{device}/actions/{action}", json=body))
    console.print(f"{action}{' ' + service if service else ''}: done (the device answered "
                  f"HTTP {reply['status']})", highlight=False)


@device_app.command("restart")
def restart(device: str, service: str | None = SERVICE_OPT, yes: bool = YES_OPT) -> None:
    """Restart the device's services (or one with --service); the device stays up."""
    if service:
        _act(device, "restart-service", service)
        return
    _confirm(device, "restart", "stops and starts every service ({services})", yes)
    _act(device, "restart")


@device_app.command("start-service")
def start_service(device: str, service: str) -> None:
    """Start one of the device's services."""
    _act(device, "start-service", service)


@device_app.command("stop-service")
def stop_service(device: str, service: str, yes: bool = YES_OPT,
                 note: str | None = NOTE_OPT) -> None:
    """Stop one of the device's services (it stays stopped until started or updated)."""
    _confirm(device, "stop-service", f"stops service {service!r} until it is started again",
             yes)
    _act(device, "stop-service", service, note=note)


@device_app.command("reboot")
def reboot(device: str, force: bool = typer.Option(False, "--force",
                                                   help="Override update locks."),
           yes: bool = YES_OPT, note: str | None = NOTE_OPT) -> None:
    """Reboot the device (never without permission: it asks unless --yes)."""
    _confirm(device, "reboot", "stops every service ({services}) and the device until it "
             "has rebooted", yes)
    _act(device, "reboot", force=force, note=note)


@device_app.command("shutdown")
def shutdown(device: str, force: bool = typer.Option(False, "--force",
                                                     help="Override update locks."),
             yes: bool = YES_OPT, note: str | None = NOTE_OPT) -> None:
    """Shut the device down (someone must power it on again)."""
    _confirm(device, "shutdown", "stops every service ({services}) and powers the device "
             "off; only someone on site can start it again", yes)
    _act(device, "shutdown", force=force, note=note)


@device_app.command("purge")
def purge(device: str, yes: bool = YES_OPT, note: str | None = NOTE_OPT) -> None:
    """Remove the data (volumes) of the device's services and restart them."""
    _confirm(device, "purge", "stops every service ({services}) and deletes their data "
             "volumes", yes)
    _act(device, "purge", note=note)


@device_app.command("identify")
def identify(device: str) -> None:
    """Blink the device's LED so someone on site can find it."""
    _act(device, "identify")


@device_app.command("diagnose")
def diagnose(device: str, as_json: bool = JSON_OPT) -> None:
    """Run the device's health checks and diagnostics report through the tunnel, with its
    target and current state; the server keeps the run (see `device diagnostics`)."""
    run = call(lambda c: c.remote("POST", f"/devices/{device}/diagnose", timeout=300))
    if as_json:
        print_json(run)
        return
    _print_checks(run["checks"])
    console.print(f"stored as run {run['id']} (edgefleet device diagnostics {device} "
                  f"--show {run['id']})")


def _print_checks(checks: Any) -> None:
    rows = checks.get("checks", checks) if isinstance(checks, dict) else checks
    if not isinstance(rows, list):
        console.print(json.dumps(checks, indent=2), highlight=False)
        return
    table = Table("CHECK", "RESULT", "DETAIL", title="health checks")
    for c in rows:
        if isinstance(c, dict):
            ok = c.get("success", c.get("status"))
            table.add_row(str(c.get("name", "?")), str(ok), str(c.get("message", ""))[:100])
    console.print(table)


@device_app.command("diagnostics")
def diagnostics(device: str, show: int | None = typer.Option(None, "--show",
                                                             help="One run in full."),
                list_runs: bool = typer.Option(False, "--list",
                                               help="List the runs (the default)."),
                as_json: bool = JSON_OPT) -> None:
    """Stored diagnostics runs of a device (readable when the device is gone)."""
    if list_runs and show is not None:
        fail("give --list or --show N, not both")
    params = {"run": show} if show is not None else {}
    runs = call(lambda c: c.remote("GET", f"/devices/{device}/diagnostics", params=params))
    if as_json:
        print_json(runs)
        return
    if show is not None:
        if not runs:
            fail(f"no run {show}")
        run = runs[0]
        _print_checks(run["checks"])
        console.print(run["report"], highlight=False, markup=False)
        console.print(json.dumps(run["state"], indent=2), highlight=False, markup=False)
        return
    table = Table("RUN", "WHEN", "BY", title=f"diagnostics of {device}")
    for r in runs:
        table.add_row(str(r["id"]), datetime.fromtimestamp(r["created_ms"] / 1000, UTC)
                      .strftime("%Y-%m-%d %H:%M:%S"), r["username"])
    console.print(table)
