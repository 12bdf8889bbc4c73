"""Test helpers: make a successful release without a build (the build path has its own
tests in test_push.py)."""

from __future__ import annotations

from typing import Any

from edgefleet.server import releases
from edgefleet.server import tables as t
from tests.support.fleet_server import RunningServer


def make_release(server: RunningServer, *, fleet_id: int, composition: dict[str, Any],
                 refs: dict[str, str] | None = None) -> str:
    """Record a successful release of `composition` (images named after the services);
    returns its commit."""
    services = list((composition.get("services") or {"main": {}}).keys())
    refs = refs or {name: f"127.0.0.1:5055/test/{name}:latest" for name in services}
    with server.db.session() as s:
        fleet = s.get(t.Fleet, fleet_id)
        assert fleet is not None
        rel = releases.start_release(s, fleet=fleet, composition=composition)
        releases.finish_release(s, release=rel, images=[
            releases.PushedImage(service=n, ref=refs[n], digest="") for n in services])
        server.db.bump_generation(s)
        commit = rel.commit
    server.state.refresh_generation()
    return commit
