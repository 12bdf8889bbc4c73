"""`preload extract|inject|copy` start without Typer and pydantic (cli/preload_fast.py parses
their options with argparse): the options must stay exactly Typer's, `--help` and command lines
the fast parser does not take still get Typer's help and errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from edgefleet.cli import preload_cmd
from edgefleet.cli.preload_fast import COMMANDS, parsers

CLI = [sys.executable, "-m", "edgefleet", "preload"]


def _typer_options(name: str) -> dict[str, tuple[Any, bool, bool]]:
    group = typer.main.get_command(preload_cmd.app)
    cmd = group.commands[name]  # type: ignore[attr-defined]
    out: dict[str, tuple[Any, bool, bool]] = {}
    for p in cmd.params:
        key = "/".join(sorted(p.opts)) if p.opts[0].startswith("-") else f"<{p.name}>"
        default = p.default
        if isinstance(default, (list, tuple)):
            default = list(default)
        elif default is not None and not isinstance(default, bool):
            default = str(default)
        out[key] = (default, bool(p.required), bool(p.multiple or p.nargs == -1))
    return out


def _argparse_options(parser: argparse.ArgumentParser) -> dict[str, tuple[Any, bool, bool]]:
    out: dict[str, tuple[Any, bool, bool]] = {}
    for act in parser._actions:
        key = "/".join(sorted(act.option_strings)) if act.option_strings else f"<{act.dest}>"
        default = act.default
        if isinstance(default, list):
            default = list(default)
        elif default is not None and not isinstance(default, bool):
            default = str(default)
        if not act.option_strings:  # a positional list: required, many
            out[key] = (None, True, True)
            continue
        many = isinstance(act, argparse._AppendAction)
        out[key] = (default, bool(act.required), many)
    return out


@pytest.mark.parametrize("name", COMMANDS)
def test_the_fast_parser_takes_exactly_typers_options(name: str) -> None:
    theirs = _typer_options(name)
    mine = _argparse_options(parsers()[name])
    assert mine == theirs


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_copy_and_inject_start_without_typer_or_pydantic(tmp_path: Path) -> None:
    probe = ("import sys; from edgefleet.cli import main; sys.argv = ['edgefleet'] + "
             "sys.argv[1:]\ntry:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print(code, 'typer' in sys.modules, 'pydantic' in sys.modules)")
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["copy", "--from-root", str(empty), "--data-root", str(tmp_path / "t"), "x"],
                 ["inject", "--data-root", str(tmp_path / "t"), "--from", str(empty)]):
        done = subprocess.run([sys.executable, "-c", probe, "preload", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.stdout.split() == ["2", "False", "False"], (done.stdout, done.stderr)
        assert "error: " in done.stderr


def test_help_and_bad_options_still_go_to_typer(tmp_path: Path) -> None:
    done = _run("copy", "--help")
    assert done.returncode == 0 and "--from-root" in done.stdout and "Usage" in done.stdout
    done = _run("copy", "--data-root", str(tmp_path), "--bogus", "x")
    assert done.returncode == 2 and "No such option" in done.stderr
    done = _run("inject", "--from", str(tmp_path))
    assert done.returncode == 2 and "Missing option" in done.stderr and "--data-root" in \
        done.stderr
    done = _run("extract", "--out", str(tmp_path / "o"), "--layers", "zip", "x")
    assert done.returncode == 2 and "--layers 'zip'" in done.stderr
