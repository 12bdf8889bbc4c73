"""`edgefleet supervisor ...`: run a device supervisor, show its status, read its logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from edgefleet.model.errors import InvalidInput

app = typer.Typer(help="Run and inspect the device supervisor.", no_args_is_help=True)
DATA_DIR_HELP = "Supervisor data dir (SQLite store, lock dirs)."


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=False)
    raise typer.Exit(2)


@app.command()
def run(
    config: Path = typer.Option(..., "--config", "-c", help="config.json of this device."),
    apps: Path | None = typer.Option(
        None, "--apps", help="apps.json to load at first boot (renamed to apps.json.preloaded)."
    ),
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet"), "--data-dir", help=DATA_DIR_HELP),
    engine_socket: str = typer.Option("/var/run/docker.sock", "--engine-socket",
                                      help="The container engine's API socket."),
    scope: str = typer.Option("default", "--scope",
                              help="Label value marking this supervisor's objects on the engine."),
    engine_pidfile: str = typer.Option("/var/run/docker.pid", "--engine-pidfile",
                                       help="The engine's pidfile (to record unclean restarts)."),
) -> None:
    """Run the supervisor: keep the engine in line with the target state until stopped.

    Unmanaged (no apiEndpoint in config.json): the target comes from apps.json or local mode.
    """
    from edgefleet.device.runtime import RunOptions, run_supervisor
    from edgefleet.model.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    try:
        cfg = load_config(path=config)
        options = RunOptions(config=cfg, data_dir=data_dir, apps_json=apps,
                             engine_socket=engine_socket, scope=scope,
                             engine_pidfile=engine_pidfile, config_path=config)
        asyncio.run(run_supervisor(options=options))
    except InvalidInput as exc:
        _fail(str(exc))


@app.command()
def status(
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet"), "--data-dir", help=DATA_DIR_HELP),
    engine_socket: str = typer.Option("/var/run/docker.sock", "--engine-socket"),
    scope: str = typer.Option("default", "--scope"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Show each app's release and update status, each service's container, and images."""
    from rich.console import Console
    from rich.table import Table

    from edgefleet.device.status import collect_status

    console = Console()
    report = asyncio.run(collect_status(data_dir=data_dir, engine_socket=engine_socket,
                                        scope=scope))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    apps = Table(title="Apps")
    for col in ("app", "release", "update status", "waiting for"):
        apps.add_column(col)
    for a in report["apps"]:
        apps.add_row(f"{a['uuid']} ({a['app_id']})", a["commit"] or "-", a["update_status"],
                     a["status_message"])
    console.print(apps)
    svcs = Table(title="Services")
    for col in ("service", "status", "container", "image", "release"):
        svcs.add_column(col)
    for s in report["services"]:
        svcs.add_row(s["service"], s["status"], s["container_id"][:12], s["image"],
                     s["release"])
    console.print(svcs)
    imgs = Table(title="Images")
    for col in ("image", "service", "status", "progress"):
        imgs.add_column(col)
    for i in report["images"]:
        pct = f"{100 * i['downloaded'] // i['total']}%" if i["total"] else ""
        imgs.add_row(i["ref"], i["service_name"], i["status"] + (f" ({i['error']})"
                     if i["error"] else ""), pct)
    console.print(imgs)
    if report.get("engine_error"):
        console.print(f"[yellow]engine:[/yellow] {report['engine_error']}")


@app.command()
def logs(
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet"), "--data-dir", help=DATA_DIR_HELP),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    service: str | None = typer.Option(None, "--service", "-s", help="Only this service."),
    lines: int = typer.Option(100, "-n", "--lines", help="How many recent lines to show."),
) -> None:
    """Print the supervisor's events and the services' output, oldest first."""
    from rich.console import Console

    from edgefleet.device.runtime import open_store

    console = Console()
    store = open_store(data_dir=data_dir)
    last = 0
    records = store.logs(service=service, limit=lines)
    while True:
        for r in records:
            when = datetime.fromtimestamp(r.ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            who = "supervisor" if r.is_system else r.service
            style = "red" if r.is_stderr else ("cyan" if r.is_system else "")
            line = f"{when} [{who}] {r.message}"
            console.print(line, style=style, markup=False, highlight=False)
            last = r.id
        if not follow:
            return
        time.sleep(0.5)
        records = store.logs(after_id=last, service=service)


@app.command()
def locks(
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet"), "--data-dir", help=DATA_DIR_HELP),
    engine_socket: str = typer.Option("/var/run/docker.sock", "--engine-socket"),
    scope: str = typer.Option("default", "--scope"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List update locks (`/tmp/balena/updates.lock` in a service) and who holds them.

    A lock whose service is not running is stale: the supervisor clears it on its next pass.
    """
    from edgefleet.device.status import collect_locks

    found = asyncio.run(collect_locks(data_dir=data_dir, engine_socket=engine_socket,
                                      scope=scope))
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo("no update locks")
    for lock in found:
        state = "held" if lock["owner_running"] else "stale (owner not running)"
        typer.echo(f"{lock['app_uuid'] or lock['app_id']}/{lock['service']}: {state}"
                   f"  {lock['path']}")
