"""The bodies of `edgefleet preload extract|inject|copy`, without Typer: called by the Typer
commands (preload_cmd) and by the start-up fast path (preload_fast), which parses the same
options with argparse. Each returns the exit code; messages go to stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgefleet.preload.inject import InjectOptions, InjectResult


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fail(message: str) -> int:
    """Print `error: message` (red on a terminal, as Typer's secho does); exit code 2."""
    text = f"error: {message}"
    say(f"\x1b[31m{text}\x1b[0m" if sys.stderr.isatty() else text)
    return 2


class Bar:
    """Progress per phase (bytes verified and copied): a rich bar on a terminal, else one line
    per phase when it ends (rich is imported only for the bar: it costs start-up time)."""

    def __init__(self) -> None:
        self._rich: Any = None
        self._task: Any = None
        self._line: tuple[str, int, float] | None = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._rich = Progress(TextColumn("{task.description:>11}"), BarColumn(),
                                  DownloadColumn(), TransferSpeedColumn(),
                                  TimeRemainingColumn(), console=Console(stderr=True),
                                  transient=False)

    def __enter__(self) -> Bar:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif e is None:
            self._end_line()

    def _end_line(self) -> None:
        if self._line is not None:
            name, total, start = self._line
            say(f"{name:>11}: {total / 2**20:.1f} MB in {time.monotonic() - start:.2f} s")
            self._line = None

    def phase(self, name: str, total: int) -> None:
        if self._rich is not None:
            self._task = self._rich.add_task(name, total=max(total, 1))
            return
        self._end_line()
        self._line = (name, total, time.monotonic())

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._rich.advance(self._task, n)


def extract(*, images: Sequence[str], data_root: Path, out: Path, verify: bool,
            layers: str) -> int:
    if layers not in ("stream", "tree"):
        return fail(f"--layers {layers!r}: use 'stream' or 'tree'")
    from edgefleet.preload.errors import PreloadError
    from edgefleet.preload.extract import extract as run

    try:
        with Bar() as bar:
            manifest = run(data_root=data_root, out=out, refs=images, verify=verify,
                           progress=bar, streams=layers == "stream")
    except PreloadError as exc:
        return fail(str(exc))
    total = sum(x.bytes for x in manifest.layers.values())
    say(f"extracted {len(manifest.images)} image(s), {len(manifest.layers)} layer(s), "
        f"{total / 2**20:.1f} MB into {out}" + ("" if manifest.verified else " (not verified)"))
    return 0


def inject(*, static_ip: str | None = None, gateway: str | None = None,
           dns: str | None = None, interface: str = "", **options: Any) -> int:
    """`preload inject` (a bundle) or `preload copy` (`from_root` and `refs`): `options` are
    InjectOptions' fields, the static-IP settings are parsed here."""
    from edgefleet.preload.errors import PreloadError
    from edgefleet.preload.inject import InjectOptions
    from edgefleet.preload.inject import inject as run
    try:
        net = None
        if static_ip:
            from edgefleet.preload.netconf import parse_static_ip

            net = parse_static_ip(address=static_ip, gateway=gateway, dns=dns,
                                  interface=interface)
        opts: InjectOptions = InjectOptions(static_ip=net, **options)
        with Bar() as bar:
            result = run(options=opts, progress=bar)
    except PreloadError as exc:
        return fail(str(exc))
    report(result)
    return 0


def report(result: InjectResult) -> None:
    say(f"injected {len(result.images)} image(s): {result.layers_copied} layer(s) copied "
        f"({result.bytes_copied / 2**20:.1f} MB), {result.layers_skipped} already present")
    for ref in result.moved_tags:
        say(f"tag {ref} now names the injected image")
    if result.apps_json:
        say(f"apps.json written to {result.apps_json}")
    if result.keyfile:
        say(f"static IP connection written to {result.keyfile}")
