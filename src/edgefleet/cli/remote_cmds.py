"""Remote access commands: `ssh`, `tunnel` and `audit` (device actions and diagnostics are
in `remote_device_cmds`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgefleet.cli.fleet_common import JSON_OPT, call, console, print_json
from edgefleet.client import Login, load_login
from edgefleet.server.tunnel.remote import (
    RemoteError,
    forward_ports,
    parse_forward,
    run_command,
)
from edgefleet.tunnel.process import run as run_loop

errors = Console(stderr=True)


def fail(message: str) -> None:
    """Errors go to stderr: stdout carries the remote command's bytes."""
    errors.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def _login() -> Login:
    login = load_login()
    if login is None:
        fail("not logged in: run `edgefleet login --url URL --token TOKEN` "
             "(or set EDGEFLEET_SERVER and EDGEFLEET_TOKEN)")
        raise AssertionError
    return login


def _split_command(args: list[str]) -> tuple[list[str], list[str] | None]:
    """(positional arguments, the command after `--` or None): click drops the `--`."""
    if "--" in args:
        at = args.index("--")
        return args[:at], args[at + 1:]
    argv = sys.argv
    if "--" not in argv:
        return args, None
    after = argv[argv.index("--") + 1:]
    return args[:len(args) - len(after)], after


def ssh(device: str = typer.Argument(..., help="Device uuid, prefix or name."),
        args: list[str] = typer.Argument(None, metavar="[SERVICE] [-- COMMAND...]",
                                         help="A service to enter, and a command to run "
                                              "instead of an interactive shell."),
        via: str | None = typer.Option(None, "--via", help="Reach DEVICE through this "
                                       "gateway device on its LAN (DEVICE listens there)."),
        ip: str | None = typer.Option(None, "--ip", help="DEVICE's address on the gateway's "
                                      "LAN (default: the last IP it reported).")) -> None:
    """A shell on a device's host or in one of its services, through the server's tunnel;
    with `-- COMMAND`, stdin and stdout are piped byte-exact (copy files with `cat`) and
    the command's exit status is passed on."""
    positional, command = _split_command(list(args or []))
    if len(positional) > 1:
        fail(f"expected at most one SERVICE before `--`, got {' '.join(positional)!r}")
    service = positional[0] if positional else None
    if ip and not via:
        fail("--ip needs --via GATEWAY")
    route = {"via": via, "ip": ip} if via else None
    login = _login()
    try:
        if command:
            code = run_loop(run_command(login, device=device, service=service,
                                           command=" ".join(command), route=route))
        else:
            from edgefleet.server.tunnel.terminal import run_shell

            code = run_loop(run_shell(login, device=device, service=service,
                                         route=route))
    except RemoteError as exc:
        fail(str(exc))
        raise
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


def tunnel(device: str = typer.Argument(..., help="Device uuid, prefix or name."),
           ports: list[str] = typer.Argument(..., metavar="LOCAL:REMOTE|LOCAL:HOST:REMOTE...",
                                             help="8080:80 forwards local port 8080 to port "
                                                  "80 on the device; 8080:192.168.1.20:80 to "
                                                  "an address on its LAN."),
           bind: str = typer.Option("127.0.0.1", "--bind", help="Local address to listen on.")
           ) -> None:
    """Forward local TCP ports to ports on a device (or on its LAN) until interrupted."""
    try:
        forwards = [parse_forward(p) for p in ports]
    except ValueError as exc:
        fail(str(exc))
        raise

    def ready(bound: list[tuple[object, int]]) -> None:
        for fwd, port in bound:
            f = fwd  # a Forward
            console.print(f"{bind}:{port} -> {getattr(f, 'host', '')}:{getattr(f, 'remote', '')}"
                          f" on {device}", highlight=False)
        console.file.flush()

    try:
        run_loop(forward_ports(_login(), device=device, forwards=forwards, bind=bind,
                                  ready=ready))
    except RemoteError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen: {exc}")
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    from edgefleet.cli import remote_device_cmds  # noqa: F401 - adds `device` commands

    app.command("ssh")(ssh)
    app.command("tunnel")(tunnel)
    app.add_typer(key_app, name="key")


key_app = typer.Typer(help="Your SSH public keys, for the server's SSH front door "
                           "(`ssh -p PORT USER@SERVER host <uuid>`).", no_args_is_help=True)


@key_app.command("add")
def key_add(name: str, path: Path = typer.Argument(
        ..., help="A public key file (e.g. ~/.ssh/id_ed25519.pub); - reads stdin.")) -> None:
    """Register an SSH public key."""
    text = sys.stdin.read() if str(path) == "-" else _read(path)
    k = call(lambda c: c.remote("POST", "/ssh-keys", json={"name": name, "public_key": text}))
    console.print(f"added key {k['name']} ({k['fingerprint']})", highlight=False)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
        raise


@key_app.command("list")
def key_list(as_json: bool = JSON_OPT) -> None:
    """Your SSH keys."""
    rows = call(lambda c: c.remote("GET", "/ssh-keys"))
    if as_json:
        print_json(rows)
        return
    table = Table("NAME", "FINGERPRINT", "KEY")
    for k in rows:
        table.add_row(k["name"], k["fingerprint"], k["public_key"][:40] + "...")
    console.print(table)


@key_app.command("rm")
def key_rm(name: str) -> None:
    """Remove one of your SSH keys (by name or fingerprint)."""
    call(lambda c: c.remote("DELETE", f"/ssh-keys/{name}"))
    console.print(f"removed key {name}")
