"""`edgefleet preload ...`: extract images from an engine's data root, inject them (with
apps.json) into another, or preload a whole release."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import typer

app = typer.Typer(help="Preload images and apps.json onto a device's data partition "
                       "(first boot without network).", no_args_is_help=True)
NO_VERIFY_HELP = ("Skip recomputing each layer's diffId from its files and tar-split (default: "
                  "verify every layer while copying it, and keep nothing when one does not "
                  "match).")


def _say(message: str) -> None:
    typer.echo(message, err=True)


class _Bar:
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

    def __enter__(self) -> _Bar:
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
            _say(f"{name:>11}: {total / 2**20:.1f} MB in {time.monotonic() - start:.2f} s")
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


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


@app.command()
def extract(
    images: list[str] = typer.Argument(..., help="Images by name (repo:tag), full or short id."),
    data_root: Path = typer.Option(Path("/var/lib/docker"), "--data-root",
                                   help="The engine's data root (live or an offline copy)."),
    out: Path = typer.Option(..., "--out", "-o", help="New bundle directory to write."),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
    layers: str = typer.Option("stream", "--layers", help="How the bundle stores each layer: "
                               "'stream' (its tar stream, one file: fastest) or 'tree' (its "
                               "overlay2 diff directory, the format-1 bundle). Inject reads "
                               "both."),
) -> None:
    """Copy images (config, layers once each, tags) out of a data root into a bundle.

    Works while the engine runs. Layers are found by computing chain ids from the image's
    diffIds; each layer's diffId is recomputed from its overlay2 diff and tar-split first.
    """
    if layers not in ("stream", "tree"):
        _fail(f"--layers {layers!r}: use 'stream' or 'tree'")
    from edgefleet.preload.errors import PreloadError
    from edgefleet.preload.extract import extract as run

    try:
        with _Bar() as bar:
            manifest = run(data_root=data_root, out=out, refs=images, verify=not no_verify,
                           progress=bar, streams=layers == "stream")
    except PreloadError as exc:
        _fail(str(exc))
        return
    total = sum(x.bytes for x in manifest.layers.values())
    _say(f"extracted {len(manifest.images)} image(s), {len(manifest.layers)} layer(s), "
                  f"{total / 2**20:.1f} MB into {out}"
                  + ("" if manifest.verified else " (not verified)"))


@app.command()
def inject(
    data_root: Path = typer.Option(..., "--data-root",
                                   help="The target engine's data root, e.g. "
                                        "<mounted data partition>/docker (engine stopped)."),
    bundle: Path = typer.Option(..., "--from", help="Bundle written by `preload extract`."),
    apps: Path | None = typer.Option(None, "--apps", help="apps.json to write beside the data "
                                     "root (<data root>/../apps.json), validated first."),
    merge: bool = typer.Option(False, "--merge", help="Merge with an apps.json already there."),
    apps_dest: Path | None = typer.Option(None, "--apps-dest", help="Write apps.json here "
                                          "instead of <data root>/../apps.json."),
    boot: Path | None = typer.Option(None, "--boot", help="Mounted boot partition (for "
                                     "--static-ip)."),
    static_ip: str | None = typer.Option(None, "--static-ip", help="ADDR/PREFIX for a "
                                         "NetworkManager static-IP connection."),
    gateway: str | None = typer.Option(None, "--gateway", help="Default gateway (with "
                                       "--static-ip)."),
    dns: str | None = typer.Option(None, "--dns", help="Comma-separated DNS servers."),
    interface: str = typer.Option("", "--interface", help="Limit the connection to one NIC."),
    engine_pidfile: list[Path] = typer.Option([], "--engine-pidfile",
                                              help="Also refuse when this pidfile's engine runs."),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
) -> None:
    """Copy a bundle's images into a stopped engine's data root; write apps.json.

    Keeps every image and tag already there (e.g. the supervisor's) and skips layers already
    present. Checks the engine is stopped, apps.json, integrity and free space before writing.
    Start the supervisor with `--apps <data root>/../apps.json` (balenaOS: /mnt/data/apps.json).
    """
    from edgefleet.preload.errors import PreloadError
    from edgefleet.preload.inject import InjectOptions
    from edgefleet.preload.inject import inject as run
    from edgefleet.preload.netconf import parse_static_ip

    try:
        net = parse_static_ip(address=static_ip, gateway=gateway, dns=dns,
                              interface=interface) if static_ip else None
        opts = InjectOptions(data_root=data_root, bundle=bundle, apps=apps, merge=merge,
                             apps_dest=apps_dest, boot=boot, static_ip=net,
                             verify=not no_verify, pidfiles=tuple(engine_pidfile))
        with _Bar() as bar:
            result = run(options=opts, progress=bar)
    except PreloadError as exc:
        _fail(str(exc))
        return
    _say(f"injected {len(result.images)} image(s): {result.layers_copied} layer(s) "
                  f"copied ({result.bytes_copied / 2**20:.1f} MB), {result.layers_skipped} "
                  f"already present")
    for ref in result.moved_tags:
        _say(f"tag {ref} now names the injected image")
    if result.apps_json:
        _say(f"apps.json written to {result.apps_json}")
    if result.keyfile:
        _say(f"static IP connection written to {result.keyfile}")


@app.command()
def release(
    fleet: str = typer.Argument(..., help="Fleet name (also the app's name in apps.json)."),
    data_root: Path = typer.Option(..., "--data-root", help="The target engine's data root "
                                   "(engine stopped); apps.json goes to <data root>/../apps.json."),
    release_: str | None = typer.Option(None, "--release", help="Release commit (server: "
                                        "default the fleet's current release; project: "
                                        "default a hash of the compose file and image ids)."),
    project: Path | None = typer.Option(None, "--project", help="Build this compose project "
                                        "(or Dockerfile directory) here instead of asking the "
                                        "fleet server."),
    server: str | None = typer.Option(None, "--server", help="Fleet server URL (default: "
                                      "`edgefleet login`'s, or env EDGEFLEET_SERVER)."),
    token: str | None = typer.Option(None, "--token", help="API token (default: `edgefleet "
                                     "login`'s, or env EDGEFLEET_TOKEN)."),
    engine_socket: str = typer.Option("/var/run/docker.sock", "--engine-socket",
                                      help="This machine's engine (builds; images it already "
                                           "has are taken from its data root)."),
    app_id: int = typer.Option(1, "--app-id", help="Numeric app id (with --project)."),
    pin: bool = typer.Option(False, "--pin", help="Set pinDevice: once in its fleet, the device "
                                                  "pins itself to this release on the server "
                                                  "(until `device pin --unpin`)."),
    merge: bool = typer.Option(False, "--merge", help="Merge with an apps.json already there."),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
) -> None:
    """Preload a release of a fleet: its images and the apps.json a device of it would get.

    From the fleet server (default): the release's composition, image refs and fleet
    variables are read over the API; images this machine's engine lacks are pulled through a
    temporary engine. With --project: the compose project is built here, services with
    `build:` tagged <fleet>/<service>:<release>; `image:`-only services must be on the engine.
    """
    from edgefleet.preload.errors import PreloadError

    try:
        with _Bar() as bar:
            if project is not None:
                from edgefleet.preload.release import LocalRelease, preload_local_release

                spec = LocalRelease(fleet=fleet, project=project, socket=engine_socket,
                                    release=release_, app_id=app_id, pin=pin)
                built, result = preload_local_release(spec=spec, data_root=data_root,
                                                      verify=not no_verify, merge=merge,
                                                      progress=bar)
                commit, refs = built.commit, sorted(built.images.values())
                how = "built here"
            else:
                from edgefleet.client import load_login
                from edgefleet.preload.fleet import ServerRelease, preload_server_release

                login = load_login()
                url = server or (login.url if login else None)
                key = token or (login.token if login else None)
                if not url or not key:
                    raise PreloadError("no fleet server: pass --server and --token, run "
                                       "`edgefleet login`, or use --project")
                sspec = ServerRelease(fleet=fleet, url=url, token=key, release=release_,
                                      socket=engine_socket, pin=pin)
                commit, refs, pulled, result = preload_server_release(
                    spec=sspec, data_root=data_root, verify=not no_verify, merge=merge,
                    progress=bar)
                how = "pulled through a temporary engine" if pulled else "from this engine"
    except PreloadError as exc:
        _fail(str(exc))
        return
    _say(f"release {commit} of {fleet}: {', '.join(refs)} ({how})")
    _say(f"injected {len(result.images)} image(s), {result.layers_copied} layer(s) "
                  f"copied, {result.layers_skipped} already present; apps.json written to "
                  f"{result.apps_json}")
