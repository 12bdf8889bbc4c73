"""`edgefleet config ...`: read and edit config.json safely (validate, backup, atomic replace)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from edgefleet.model.errors import InvalidInput

app = typer.Typer(help="Show, check and edit config.json (the device's configuration, as on"
                  " balena).", no_args_is_help=True)

DEFAULT = os.environ.get("EDGEFLEET_CONFIG", "/mnt/boot/config.json")
PATH_OPT = typer.Option(Path(DEFAULT), "--config", "-c",
                        help="config.json to use (env EDGEFLEET_CONFIG).")


def _read(path: Path) -> dict[str, Any]:
    from edgefleet.model.config import load_config

    try:
        load_config(path=path)
    except InvalidInput as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    from edgefleet.model.config import save_config

    try:
        save_config(path=path, config=data)
    except InvalidInput as exc:
        typer.echo(f"error: change refused, {path} is unchanged: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"saved {path} (previous version in {path.name}.backup)")


def _parse_value(raw: str, as_string: bool) -> Any:
    if as_string:
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


@app.command()
def show(path: Path = PATH_OPT,
         reveal: bool = typer.Option(False, "--reveal", help="Show secrets too.")) -> None:
    """Print config.json, with secret fields (API keys, wifi keys, ...) redacted."""
    from edgefleet.model.config import redact

    data = _read(path)
    typer.echo(json.dumps(data if reveal else redact(data=data), indent=2))


@app.command()
def get(key: str, path: Path = PATH_OPT,
        reveal: bool = typer.Option(False, "--reveal", help="Show a secret value.")) -> None:
    """Print one field (dotted keys reach nested fields: os.sshKeys)."""
    from edgefleet.model.config import redact

    value: Any = _read(path)
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            typer.echo(f"error: {key} is not set in {path}", err=True)
            raise typer.Exit(1)
        value = value[part]
    shown = value if reveal else redact(data={key.split(".")[-1]: value})[key.split(".")[-1]]
    typer.echo(json.dumps(shown) if not isinstance(shown, str) else shown)


@app.command("set")
def set_(key: str, value: str, path: Path = PATH_OPT,
         string: bool = typer.Option(False, "--string", help="Store VALUE as a string even "
                                     "when it parses as JSON (a number, true, ...).")) -> None:
    """Set a field; the whole file is validated first and replaced atomically."""
    data = _read(path)
    target = data
    parts = key.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = _parse_value(value, string)
    _write(path, data)


@app.command()
def unset(key: str, path: Path = PATH_OPT) -> None:
    """Remove a field (validated and replaced atomically like `set`)."""
    data = _read(path)
    target = data
    parts = key.split(".")
    for part in parts[:-1]:
        target = target.get(part, {})
    if parts[-1] not in target:
        typer.echo(f"error: {key} is not set in {path}", err=True)
        raise typer.Exit(1)
    del target[parts[-1]]
    _write(path, data)


@app.command()
def validate(path: Path = PATH_OPT) -> None:
    """Check config.json; exit 2 and name every bad field when it does not validate (also
    optional fields the supervisor would ignore, using their default)."""
    from edgefleet.model.config import parse_config

    config = parse_config(data=_read(path))
    for problem in config.ignored:
        typer.echo(f"error: {path}: {problem} (the supervisor runs with the default"
                   f" meanwhile; fix it with `edgefleet config set {problem.path} VALUE`)",
                   err=True)
    if config.ignored:
        raise typer.Exit(2)
    for note in config.adjusted:
        typer.echo(f"note: {note}")
    typer.echo(f"{path}: valid")
