"""`edgefleet preload ...`: extract images from an engine's data root, inject them (with
apps.json) into another (or both in one step: copy), or preload a whole release."""

from __future__ import annotations

from pathlib import Path

import typer

from edgefleet.cli import preload_run
from edgefleet.cli.preload_run import Bar as _Bar
from edgefleet.cli.preload_run import say as _say

app = typer.Typer(help="Preload images and apps.json onto a device's data partition "
                       "(first boot without network).", no_args_is_help=True)
NO_VERIFY_HELP = ("Skip recomputing each layer's diffId from its files and tar-split (default: "
                  "verify every layer while copying it, and keep nothing when one does not "
                  "match).")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(code)


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
    _exit(preload_run.extract(images=images, data_root=data_root, out=out,
                              verify=not no_verify, layers=layers))


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
    _exit(preload_run.inject(data_root=data_root, bundle=bundle, apps=apps, merge=merge,
                             apps_dest=apps_dest, boot=boot, static_ip=static_ip,
                             gateway=gateway, dns=dns, interface=interface,
                             verify=not no_verify, pidfiles=tuple(engine_pidfile)))


@app.command()
def copy(
    images: list[str] = typer.Argument(..., help="Images by name (repo:tag), full or short id."),
    from_root: Path = typer.Option(Path("/var/lib/docker"), "--from-root",
                                   help="The source engine's data root (live or an offline "
                                        "copy)."),
    data_root: Path = typer.Option(..., "--data-root",
                                   help="The target engine's data root, e.g. "
                                        "<mounted data partition>/docker (engine stopped)."),
    apps: Path | None = typer.Option(None, "--apps", help="apps.json to write beside the data "
                                     "root (<data root>/../apps.json), validated first."),
    merge: bool = typer.Option(False, "--merge", help="Merge with an apps.json already there."),
    apps_dest: Path | None = typer.Option(None, "--apps-dest", help="Write apps.json here "
                                          "instead of <data root>/../apps.json."),
    engine_pidfile: list[Path] = typer.Option([], "--engine-pidfile",
                                              help="Also refuse when this pidfile's engine runs."),
    no_verify: bool = typer.Option(False, "--no-verify", help=NO_VERIFY_HELP),
) -> None:
    """Extract + inject in one step: images straight from one data root into another.

    No bundle in between: each layer's files are read once from the source's overlay2 diff,
    verified against its tar-split and diffId, and copied into the target, with the same
    checks as inject (target engine stopped, apps.json, integrity, free space; nothing kept on
    a failure). Use extract + inject when the target is elsewhere (the bundle travels).
    """
    _exit(preload_run.inject(data_root=data_root, from_root=from_root, refs=tuple(images),
                             apps=apps, merge=merge, apps_dest=apps_dest,
                             verify=not no_verify, pidfiles=tuple(engine_pidfile)))


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
