"""`edgefleet supervisor ...`: run a device supervisor, show its status, read its logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from edgefleet.cli.units import add_unit_command
from edgefleet.model.errors import InvalidInput

app = typer.Typer(help="Run and inspect the device supervisor.", no_args_is_help=True)
DATA_DIR_HELP = "Supervisor data dir (SQLite store, lock dirs)."
FIND_HELP = ("Supervisor data dir (default: the supervisor running on this machine, else "
             "/var/lib/edgefleet).")
SOCKET_HELP = "The engine's socket (default: the running supervisor's)."
SCOPE_HELP = "The supervisor's scope (default: the running supervisor's)."


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
    api_host: str = typer.Option("0.0.0.0", "--api-host",
                                 help="Address the supervisor API listens on."),
    api_port: int | None = typer.Option(
        None, "--api-port", help="Port of the supervisor API (default: config.json listenPort,"
        " 48484; 0 picks a free one)."),
    bridge_name: str = typer.Option("supervisor0", "--bridge-name",
                                    help="Engine bridge through which services reach the API."),
    bridge_subnet: str = typer.Option("10.114.104.0/25", "--bridge-subnet",
                                      help="Subnet of that bridge (its gateway is the address)."),
    reboot_command: str = typer.Option("systemctl reboot", "--reboot-command",
                                       help="Host command run by POST /v1/reboot."),
    shutdown_command: str = typer.Option("systemctl poweroff", "--shutdown-command",
                                         help="Host command run by POST /v1/shutdown."),
) -> None:
    """Run the supervisor and its API: keep the engine in line with the target state.

    Unmanaged (no apiEndpoint in config.json): the target comes from apps.json or local mode.
    The balena-compatible supervisor API listens on listenPort (48484).
    """
    import shlex

    from edgefleet.cli.diagnostics_wiring import DiagnoseForApi
    from edgefleet.device.api.context import HostCommands
    from edgefleet.device.runtime import RunOptions, run_supervisor
    from edgefleet.model.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    try:
        cfg = load_config(path=config)
        options = RunOptions(
            config=cfg, data_dir=data_dir, apps_json=apps, engine_socket=engine_socket,
            scope=scope, engine_pidfile=engine_pidfile, api_host=api_host, api_port=api_port,
            bridge_name=bridge_name, bridge_subnet=bridge_subnet,
            host_commands=HostCommands(reboot=tuple(shlex.split(reboot_command)),
                                       shutdown=tuple(shlex.split(shutdown_command))),
            diagnostics=DiagnoseForApi(config=cfg, config_path=config,
                                       engine_socket=engine_socket, data_dir=data_dir),
            config_path=config,
        )
        asyncio.run(run_supervisor(options=options))
    except InvalidInput as exc:
        _fail(str(exc))


@app.command()
def status(
    data_dir: Path | None = typer.Option(None, "--data-dir", help=FIND_HELP),
    engine_socket: str | None = typer.Option(None, "--engine-socket", help=SOCKET_HELP),
    scope: str | None = typer.Option(None, "--scope", help=SCOPE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Show each app's release and update status, each service's container, and images.

    Update status: downloading, downloaded, applying changes, done, aborted (cannot proceed
    now: no disk space, failed download; the current release keeps running and it is
    retried) or rejected (the release cannot run on this device), with the reason. Services
    show the image they are being updated to with download progress; images show bytes."""
    from rich.console import Console
    from rich.table import Table

    from edgefleet.cli.supervisor_find import find_supervisor
    from edgefleet.device.status import collect_status

    found = find_supervisor(data_dir=data_dir, engine_socket=engine_socket, scope=scope)
    console = Console(width=max(Console().width, 160))
    report = asyncio.run(collect_status(data_dir=found.data_dir,
                                        engine_socket=found.engine_socket, scope=found.scope))
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
    for col in ("service", "status", "container", "image", "release", "update"):
        svcs.add_column(col)
    for s in report["services"]:
        svcs.add_row(s["service"], s["status"], s["container_id"][:12], s["image"],
                     s["release"], s["update"])
    console.print(svcs)
    imgs = Table(title="Images")
    for col in ("image", "service", "status", "progress"):
        imgs.add_column(col)
    for i in report["images"]:
        imgs.add_row(i["ref"], i["service_name"], i["status"] + (f" ({i['error']})"
                     if i["error"] else ""), i["progress"])
    console.print(imgs)
    if report.get("engine_error"):
        console.print(f"[yellow]engine:[/yellow] {report['engine_error']}")


@app.command()
def logs(
    data_dir: Path | None = typer.Option(None, "--data-dir", help=FIND_HELP),
    scope: str | None = typer.Option(None, "--scope", help=SCOPE_HELP),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    service: str | None = typer.Option(None, "--service", "-s", help="Only this service."),
    lines: int = typer.Option(100, "-n", "--lines", help="How many recent lines to show."),
) -> None:
    """Print the supervisor's events and the services' output, oldest first."""
    from rich.console import Console

    from edgefleet.cli.supervisor_find import find_supervisor
    from edgefleet.device.runtime import open_store

    found = find_supervisor(data_dir=data_dir, engine_socket=None, scope=scope)
    console = Console()
    store = open_store(data_dir=found.data_dir)
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
    data_dir: Path | None = typer.Option(None, "--data-dir", help=FIND_HELP),
    engine_socket: str | None = typer.Option(None, "--engine-socket", help=SOCKET_HELP),
    scope: str | None = typer.Option(None, "--scope", help=SCOPE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List update locks (`/tmp/balena/updates.lock` in a service) and who holds them.

    A lock whose service is not running is stale: the supervisor clears it on its next pass.
    """
    from edgefleet.cli.supervisor_find import find_supervisor
    from edgefleet.device.status import collect_locks

    where = find_supervisor(data_dir=data_dir, engine_socket=engine_socket, scope=scope)
    held = asyncio.run(collect_locks(data_dir=where.data_dir, engine_socket=where.engine_socket,
                                     scope=where.scope))
    if as_json:
        typer.echo(json.dumps(held, indent=2))
        return
    if not held:
        typer.echo("no update locks")
    for lock in held:
        state = "held" if lock["owner_running"] else "stale (owner not running)"
        typer.echo(f"{lock['app_uuid'] or lock['app_id']}/{lock['service']}: {state}"
                   f"  {lock['path']}")


@app.command()
def prune(
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet"), "--data-dir", help=DATA_DIR_HELP),
    engine_socket: str = typer.Option("/var/run/docker.sock", "--engine-socket"),
    scope: str = typer.Option("default", "--scope"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; delete nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Delete images this supervisor pulled that no release uses any more (what it does after
    every successful update). Images it did not pull, images any container uses (running or
    stopped) and images of the target are never deleted; volumes are never touched."""
    from edgefleet.cli.prune_view import show
    from edgefleet.device.prune import prune as do_prune
    from edgefleet.engine.errors import EngineError

    if not (data_dir / "edgefleet.sqlite").exists():
        _fail(f"no supervisor store in {data_dir}")
    try:
        result = asyncio.run(do_prune(engine_socket=engine_socket, scope=scope,
                                      data_dir=data_dir, dry_run=dry_run, engine_wide=False))
    except EngineError as exc:
        _fail(str(exc))
        return
    show(result, as_json=as_json)


@app.command("api-key")
def api_key(
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet"), "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """Print the supervisor API's global key (generated at the supervisor's first start).

    Send it as `?apikey=KEY` or `Authorization: Bearer KEY`. `POST /v1/regenerate-api-key`
    replaces it.
    """
    from edgefleet.device.runtime import open_store

    key = None
    if (data_dir / "edgefleet.sqlite").exists():
        key = open_store(data_dir=data_dir).api_key(app_uuid="")
    if not key:
        _fail(f"no API key in {data_dir}: start `edgefleet supervisor run` once first")
    typer.echo(key)


add_unit_command(app, "supervisor")
