"""Start-up fast path for `edgefleet preload extract|inject|copy` (called by `cli.main` before
Typer loads). Typer 0.29 builds a pydantic TypeAdapter for every option when a command runs:
with its imports that is about 0.2 s per run, as long as copying 200 MB takes. These three
commands are the ones a preload script runs, so their options are parsed here with argparse
(the same names and defaults as preload_cmd's Typer commands: tests/preload/test_cli_fast.py
compares them) and the same bodies run (preload_run). `--help`, and any command line this
parser does not accept, go to Typer instead, which prints its usual help or error."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

COMMANDS = ("extract", "inject", "copy")


class _NotMine(Exception):
    """The command line is not one this parser takes: let Typer handle it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotMine(message)


def parsers() -> dict[str, argparse.ArgumentParser]:
    """One parser per command, mirroring preload_cmd's options (flags, defaults)."""
    ex = _Parser(prog="edgefleet preload extract", add_help=False, allow_abbrev=False)
    ex.add_argument("images", nargs="+")
    ex.add_argument("--data-root", type=Path, default=Path("/var/lib/docker"))
    ex.add_argument("--out", "-o", type=Path, required=True)
    ex.add_argument("--no-verify", action="store_true")
    ex.add_argument("--layers", default="stream")

    inj = _Parser(prog="edgefleet preload inject", add_help=False, allow_abbrev=False)
    inj.add_argument("--data-root", type=Path, required=True)
    inj.add_argument("--from", dest="bundle", type=Path, required=True)
    _target_options(inj)
    inj.add_argument("--boot", type=Path, default=None)
    inj.add_argument("--static-ip", default=None)
    inj.add_argument("--gateway", default=None)
    inj.add_argument("--dns", default=None)
    inj.add_argument("--interface", default="")

    cp = _Parser(prog="edgefleet preload copy", add_help=False, allow_abbrev=False)
    cp.add_argument("images", nargs="+")
    cp.add_argument("--from-root", type=Path, default=Path("/var/lib/docker"))
    cp.add_argument("--data-root", type=Path, required=True)
    _target_options(cp)
    return {"extract": ex, "inject": inj, "copy": cp}


def _target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--apps", type=Path, default=None)
    p.add_argument("--merge", action="store_true")
    p.add_argument("--apps-dest", type=Path, default=None)
    p.add_argument("--engine-pidfile", type=Path, action="append", default=[])
    p.add_argument("--no-verify", action="store_true")


def run(argv: Sequence[str]) -> int | None:
    """Run `preload <command> ...` (argv without the program name); None when the command
    line is for Typer (help, another command, something this parser does not accept)."""
    if len(argv) < 2 or argv[0] != "preload" or argv[1] not in COMMANDS or \
            any(a in ("--help", "-h") for a in argv[2:]):
        return None
    try:
        ns = parsers()[argv[1]].parse_intermixed_args(list(argv[2:]))
    except _NotMine:
        return None
    from edgefleet.cli import preload_run

    if argv[1] == "extract":
        return preload_run.extract(images=ns.images, data_root=ns.data_root, out=ns.out,
                                   verify=not ns.no_verify, layers=ns.layers)
    target = {"data_root": ns.data_root, "apps": ns.apps, "merge": ns.merge,
              "apps_dest": ns.apps_dest, "verify": not ns.no_verify,
              "pidfiles": tuple(ns.engine_pidfile)}
    if argv[1] == "copy":
        return preload_run.inject(from_root=ns.from_root, refs=tuple(ns.images), **target)
    return preload_run.inject(bundle=ns.bundle, boot=ns.boot, static_ip=ns.static_ip,
                              gateway=ns.gateway, dns=ns.dns, interface=ns.interface, **target)
