"""`edgefleet --help` speaks to its two audiences, and every command shows an example and
speaks of edgefleet and balena only (no spec section numbers)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from edgefleet.cli import build_app

FLEET = {"login", "fleet", "device", "push", "env", "logs", "release"}
DEVICE = {"supervisor", "diagnose", "config", "engine", "preload"}


def help_of(*args: str) -> str:
    r = CliRunner().invoke(build_app(), [*args, "--help"], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    return r.output


def panels(text: str) -> dict[str, set[str]]:
    """Panel title -> the commands listed in it."""
    found: dict[str, set[str]] = {}
    title = ""
    for line in text.splitlines():
        head = re.match(r"╭─ (.+?) ─", line)
        if head:
            title = head.group(1)
            found[title] = set()
        elif line.startswith("│ ") and title:
            name = line[2:].split(" ", 1)[0]
            if re.fullmatch(r"[a-z][a-z-]+", name):
                found[title].add(name)
    return found


def commands(group: Any, path: list[str]) -> Iterator[list[str]]:
    for name, sub in getattr(group, "commands", {}).items():
        if hasattr(sub, "commands"):
            yield from commands(sub, [*path, name])
        else:
            yield [*path, name]


def test_help_groups_commands_for_fleet_users_and_device_operators() -> None:
    found = panels(help_of())
    fleet = next(v for k, v in found.items() if k.startswith("Fleet"))
    device = next(v for k, v in found.items() if k.startswith("Device"))
    assert fleet >= FLEET and not fleet & DEVICE
    assert device >= DEVICE and not device & FLEET


def test_every_command_has_an_example_and_no_spec_section_numbers() -> None:
    root = typer.main.get_command(build_app())
    everything = list(commands(root, []))
    assert len(everything) > 30
    missing, spec = [], []
    for path in everything:
        text = help_of(*path)
        if "Example: edgefleet" not in text and "Example: curl" not in text:
            missing.append(" ".join(path))
        if re.search(r"seed \d|§", text):
            spec.append(" ".join(path))
    assert missing == [] and spec == [], f"no example: {missing}; spec numbers: {spec}"
    assert "§" not in help_of() and "seed" not in help_of()
