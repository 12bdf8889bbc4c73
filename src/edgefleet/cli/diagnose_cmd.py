"""`edgefleet diagnose ...`: health checks of this device (as balena's device diagnostics)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Find out why a device misbehaves.", no_args_is_help=True)


def _defaults(config: Path | None, engine_socket: str | None, data_dir: Path | None, *,
              live: bool) -> tuple[Path, str, Path]:
    """Without flags and without /mnt/boot/config.json (not a balenaOS-like layout), a live
    host's check looks at the device of the supervisor running here, and says so."""
    boot = Path("/mnt/boot/config.json")
    if live and config is None and not boot.exists():
        from edgefleet.device.runfile import running_supervisors

        found = [r for r in running_supervisors() if r.config]
        if data_dir is not None:
            found = [r for r in found if Path(r.data_dir) == data_dir.resolve()]
        if len(found) == 1:
            typer.echo(f"[checking {found[0].describe()}, config {found[0].config}]", err=True)
            return (Path(found[0].config), engine_socket or found[0].engine_socket,
                    data_dir or Path(found[0].data_dir))
    return (config or boot, engine_socket or "/var/run/docker.sock",
            data_dir or Path("/var/lib/edgefleet"))


@app.command()
def checks(
    as_json: bool = typer.Option(False, "--json", help="device-diagnostics' JSON format."),
    root: Path = typer.Option(Path("/"), "--root", help="Host root (a copy of one works too)."),
    data_root: str = typer.Option("/var/lib/docker", "--data-root",
                                  help="The engine's data root inside --root."),
    config: Path | None = typer.Option(
        None, "--config", help="config.json (API endpoint, dnsServers, listenPort); default:"
        " /mnt/boot/config.json, else the one of the supervisor running here."),
    engine_socket: str | None = typer.Option(
        None, "--engine-socket", help="default: /var/run/docker.sock, or the running"
        " supervisor's."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Supervisor data dir (its record of engine starts); default:"
        " /var/lib/edgefleet, or the running supervisor's."),
) -> None:
    """Run the health checks: memory, temperature and throttling, under-voltage, disk space,
    write latency, data partition, OS, time sync, OS rollbacks, and with a config.json the
    config, supervisor, DNS and API checks. Exit 1 if any fails."""
    from edgefleet.diagnose.host import Host
    from edgefleet.diagnose.suite import run_device_checks
    from edgefleet.model.config import load_config
    from edgefleet.model.errors import InvalidInput

    config, engine_socket, data_dir = _defaults(config, engine_socket, data_dir,
                                                live=root == Path("/"))
    host = Host(root=root, data_root=data_root, run_commands=root == Path("/"))
    device_config, refused = None, None
    if config.exists():
        try:
            device_config = load_config(path=config)
        except InvalidInput as exc:  # check_config says why; the checks needing it are skipped
            refused = exc
    report = run_device_checks(host=host, config=device_config, engine_socket=engine_socket,
                               data_dir=data_dir, config_refused=refused)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"edgefleet diagnose {report['diagnose_version']}")
        for col in ("check", "", "status"):
            table.add_column(col)
        for c in report["checks"]:
            table.add_row(c["name"], "[green]ok[/green]" if c["success"] else "[red]FAIL[/red]",
                          c["status"])
        Console().print(table)
    if not all(c["success"] for c in report["checks"]):
        raise typer.Exit(1)


@app.command()
def report(
    output: Path | None = typer.Option(None, "-o", "--output", help="Write to FILE."),
    config: Path = typer.Option(Path("/mnt/boot/config.json"), "--config",
                                help="config.json whose secrets are redacted everywhere."),
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet"), "--data-dir",
                                  help="Supervisor data dir (its API keys are redacted too)."),
    engine: str = typer.Option("docker", "--engine", help="Engine CLI (docker, balena-engine)."),
) -> None:
    """Collect the diagnostics report: ENGINE, HARDWARE, NETWORK, OS, SUPERVISOR and TIME
    sections; every command has a timeout; secrets are replaced in every line."""
    import sqlite3

    from edgefleet.diagnose.report import build_report, default_commands

    secrets: list[str] = []
    db = data_dir / "edgefleet.sqlite"
    if db.exists():  # the supervisor API keys are secrets too
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                secrets += [row[0] for row in conn.execute("SELECT key FROM api_secret")]
        except sqlite3.Error:
            pass
    text = build_report(commands=default_commands(engine=engine),
                        config_path=config if config.exists() else None,
                        extra_secrets=secrets)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output} ({len(text)} bytes)")


@app.command()
def state(
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet"), "--data-dir"),
    engine_socket: str = typer.Option("/var/run/docker.sock", "--engine-socket"),
    scope: str = typer.Option("default", "--scope"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Show target and current state side by side, marking every difference."""
    import asyncio
    from dataclasses import asdict

    from edgefleet.diagnose.state import collect_state

    rows = asyncio.run(collect_state(data_dir=data_dir, engine_socket=engine_socket,
                                     scope=scope))
    if as_json:
        typer.echo(json.dumps([{**asdict(r), "differences": r.differences} for r in rows],
                              indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="target vs current")
    for col in ("app", "service", "target image / release", "current image / release / status",
                "differences"):
        table.add_column(col)
    for r in rows:
        diff = ", ".join(r.differences)
        table.add_row(r.app, r.service, f"{r.target_image or '-'} / {r.target_release or '-'}",
                      f"{r.current_image or '-'} / {r.current_release or '-'} / "
                      f"{r.current_status or '-'}",
                      f"[red]{diff}[/red]" if diff else "[green]in sync[/green]")
    Console().print(table)
