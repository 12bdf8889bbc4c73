"""`edgefleet engine storage|prune`: where an image's layers, a container's writable layer and the
volumes live in the engine's data root, read straight from disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Inspect the container engine's on-disk storage.", no_args_is_help=True)


@app.command()
def storage(
    ref: str | None = typer.Argument(None, help="Image (name:tag, id, short id) or container "
                                                "(name or id prefix)."),
    volumes: bool = typer.Option(False, "--volumes", help="Volumes, who uses them, and sizes."),
    data_root: Path = typer.Option(Path("/var/lib/docker"), "--data-root"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Image: layers with diffId, chainId, cache-id, overlay dir and size. Container: mount-id
    and writable-layer dir. --volumes: each volume's app, services and size, and totals."""
    from edgefleet.engine.storage import DataRoot, StorageError, volume_usage

    try:
        root = DataRoot(data_root)
        if volumes:
            out: Any = volume_usage(root)
        elif ref is None:
            raise StorageError("name an image or a container, or pass --volumes")
        else:
            try:
                img = root.image(ref)
                out = {"image": img.id, "tags": list(img.tags), "layers": [
                    {"diff_id": x.diff_id, "chain_id": x.chain_id, "cache_id": x.cache_id,
                     "dir": str(x.directory), "size": x.size} for x in img.layers]}
            except StorageError:
                ctr = root.container(ref)
                out = {"container": ctr.id, "name": ctr.name, "mount_id": ctr.mount_id,
                       "init_id": ctr.init_id, "writable_layer": str(ctr.writable_dir),
                       "volumes": list(ctr.volumes)}
    except StorageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(out, indent=2) if as_json else _text(out))


@app.command()
def prune(
    engine_socket: str = typer.Option("/var/run/docker.sock", "--engine-socket"),
    data_dir: Path = typer.Option(Path("/var/lib/edgefleet"), "--data-dir",
                                  help="Supervisor data dir: its unused images go too, and the"
                                       " images of its target are kept."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; delete nothing."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Reclaim space safely: delete dangling images (no tag, no digest, no
    container), images the supervisor pulled that no release uses, and unused build cache.

    Never deleted: volumes (customer data), networks, containers (stopped supervised ones are
    kept on purpose, e.g. `restart: no`; others may be an operator's), and any image a
    container uses or the target references. Unlike `balena system prune -a --volumes`."""
    import asyncio

    from edgefleet.cli.prune_view import show
    from edgefleet.device.prune import prune as do_prune
    from edgefleet.engine.errors import EngineError

    try:
        result = asyncio.run(do_prune(engine_socket=engine_socket, scope="", data_dir=data_dir,
                                      dry_run=dry_run, engine_wide=True))
    except EngineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    show(result, as_json=as_json)


def _text(out: dict[str, Any]) -> str:
    if "layers" in out:
        lines = [f"image {out['image']}  tags: {', '.join(out['tags']) or '-'}"]
        for i, x in enumerate(out["layers"]):
            lines.append(f"  layer {i}: diffId {x['diff_id']}\n           chainId {x['chain_id']}"
                         f"\n           cache-id {x['cache_id']}  size {x['size']}"
                         f"\n           dir {x['dir']}")
        return "\n".join(lines)
    if "container" in out:
        return (f"container {out['container']} ({out['name']})\n  mount-id {out['mount_id']}\n"
                f"  writable layer {out['writable_layer']}\n  volumes: "
                f"{', '.join(out['volumes']) or '-'}")
    lines = [f"{v['volume']}: {v['size']} bytes, used by "
             f"{', '.join(u['app'] + '/' + u['service'] for u in v['used_by']) or 'nothing'}"
             for v in out["volumes"]]
    lines += [f"app {k or '-'}: {v} bytes" for k, v in sorted(out["per_app"].items())]
    lines += [f"service {k}: {v} bytes" for k, v in sorted(out["per_service"].items())]
    return "\n".join(lines)
