"""Rendering of a prune result, shared by `supervisor prune` and `engine prune`."""

from __future__ import annotations

import json

import typer

from edgefleet.engine.prune import PruneResult


def show(result: PruneResult, *, as_json: bool) -> None:
    """Print what was (or would be) deleted and kept."""
    mb = 2**20
    if as_json:
        typer.echo(json.dumps({
            "dry_run": result.dry_run,
            "images": [{"id": c.image_id, "names": list(c.names), "size": c.size,
                        "reason": c.reason, "removed": c.image_id in result.removed,
                        "kept": result.kept.get(c.image_id, "")} for c in result.candidates],
            "build_cache_bytes": result.build_cache_bytes,
            "reclaimable_bytes": result.reclaimable_bytes,
            "reclaimed_bytes": result.reclaimed_bytes,
        }, indent=2))
        return
    verb = "would delete" if result.dry_run else "deleted"
    if not result.candidates:
        typer.echo("no images to delete")
    for c in result.candidates:
        what = verb if c.image_id not in result.kept else f"kept ({result.kept[c.image_id]})"
        typer.echo(f"{what}: {c.image_id[:19]} {', '.join(c.names) or '<none>'}"
                   f"  {c.size / mb:.1f} MB  [{c.reason}]")
    if result.build_cache_bytes:
        typer.echo(f"{verb} build cache: {result.build_cache_bytes / mb:.1f} MB")
    if result.dry_run:
        typer.echo(f"Total reclaimable space: {result.reclaimable_bytes / mb:.1f} MB (dry run:"
                   " nothing was deleted)")
    else:
        typer.echo(f"Total reclaimed space: {result.reclaimed_bytes / mb:.1f} MB")
