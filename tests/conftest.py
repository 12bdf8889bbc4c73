"""Shared fixtures: the real dockerd and local registry, unique names, busybox test images."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support import images
from tests.support.dockerd import Dockerd, new_dockerd

# Subprocesses (`python -m edgefleet ...`) import this checkout's code, not whichever copy the
# venv's editable install points at (matters for git worktrees sharing one venv).
_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_SRC, os.environ.get("PYTHONPATH", "")) if p)


def _engine_up() -> bool:
    try:
        with images.engine_client(timeout=3) as c:
            return c.get("/_ping").text == "OK"
    except httpx.HTTPError:
        return False


def _registry_up() -> bool:
    try:
        return httpx.get(f"http://{images.REGISTRY}/v2/", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _remove_leftover_test_objects() -> None:
    """In CI, before any test: containers, volumes and networks a crashed earlier run left on
    the shared engine (every test supervisor has a scope of its own; `default` is a real
    device's) would hold the names (`<service>_<imageId>_<releaseId>_<commit>`,
    `<appId>_<volume>`) and address pools this run needs."""
    import json

    def leftover(obj: dict[str, object]) -> bool:
        labels = obj.get("Labels") or {}
        return isinstance(labels, dict) and labels.get("io.edgefleet.scope") != "default"

    flt = {"filters": json.dumps({"label": ["io.edgefleet.scope"]})}
    with images.engine_client(timeout=60) as c:
        for ctr in c.get("/containers/json", params={"all": "true", **flt}).json():
            if leftover(ctr):
                c.delete(f"/containers/{ctr['Id']}", params={"force": "true", "v": "false"})
        for vol in c.get("/volumes", params=flt).json().get("Volumes") or []:
            if leftover(vol):
                c.delete(f"/volumes/{vol['Name']}")
        # networks hold address pools: enough leftovers and the engine has none to give
        for net in c.get("/networks", params=flt).json():
            if leftover(net):
                c.delete(f"/networks/{net['Id']}")
        bridges = {"filters": json.dumps({"label": ["io.edgefleet.supervisor-bridge"]})}
        for net in c.get("/networks", params=bridges).json():
            if net["Name"].startswith("efb"):  # tests/engine/test_bridge.py's names
                c.delete(f"/networks/{net['Id']}")


@pytest.fixture(scope="session", autouse=True)
def _clean_engine_in_ci() -> None:
    if os.environ.get("CI") and _engine_up():
        _remove_leftover_test_objects()


_HOST_BRIDGE: list[str] = []


@pytest.fixture(autouse=True)
def _host_bridge_kept() -> Iterator[None]:
    """The shared engine needs the host's docker0 for every build with a RUN step. A private
    dockerd that restarts after SIGKILL may delete it some time after it started (dockerd
    20.10 clears a "stale" default bridge), too late for its own start to notice: give it back
    after any test that lost it."""
    from tests.support.dockerd import _bridge_addresses, _restore_bridge

    if not _HOST_BRIDGE:
        _HOST_BRIDGE.extend(_bridge_addresses("docker0"))
    yield
    if _HOST_BRIDGE and not os.path.exists("/sys/class/net/docker0"):
        _restore_bridge("docker0", _HOST_BRIDGE)


@pytest.fixture(scope="session")
def engine_sock() -> str:
    """The shared test dockerd's socket. Fails (not skips) in CI when it is missing."""
    if not _engine_up():
        if os.environ.get("CI"):
            pytest.fail("dockerd is not running: scripts/setup should have started it")
        pytest.skip("dockerd is not running (run scripts/setup)")
    return images.DOCKER_SOCK


@pytest.fixture(scope="session")
def registry(engine_sock: str) -> str:
    """The local registry's address (`127.0.0.1:5055`)."""
    if not _registry_up():
        if os.environ.get("CI"):
            pytest.fail("the local registry is not running: scripts/setup should have started it")
        pytest.skip("the local registry is not running (run scripts/setup)")
    return images.REGISTRY


@pytest.fixture
def unique() -> str:
    """A short unique token for names (app uuids, scopes, repos) so tests never collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def private_dockerd() -> Iterator[Dockerd]:
    """A started private dockerd with its own roots; cleaned up afterwards (its containers
    force-removed first: a clean engine stops at once)."""
    d = new_dockerd()
    d.start()
    try:
        yield d
    finally:
        try:
            d.remove_containers()
        finally:
            d.cleanup()
