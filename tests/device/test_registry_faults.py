"""A registry that goes away before and during a pull (issue 3): the current release keeps
running, status names the cause, the pull is retried with backoff and completes once the
registry is back. A release with no image variant for this platform is rejected. Uses a
private docker-registry on an ephemeral port behind a throttling proxy (never the shared one)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.device.status import collect_status
from edgefleet.device.store import AppRecord
from edgefleet.device.targets import TargetSource
from tests.device.conftest import Device, cleanup_scope, make_device
from tests.support import images
from tests.support.registry import PrivateRegistry, ThrottleProxy, copy_image

pytestmark = pytest.mark.engine
COMPOSE = """
services:
  app:
    command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
"""


@pytest.fixture
async def gated(registry: str, unique: str, tmp_path: Path) -> AsyncIterator[Device]:
    dev = make_device(data_dir=tmp_path, scope=f"r{unique}", app_uuid=f"appr{unique}",
                      gate=True, poll_interval_s=10)
    try:
        yield dev
    finally:
        if dev.supervisor.gate is not None:
            await dev.supervisor.gate.close()
        await dev.engine.close()
        cleanup_scope(f"r{unique}")


async def wait_for(what: str, check: Callable[[], Any], limit_s: float) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def app_of(dev: Device) -> AppRecord | None:
    apps = dev.store.apps()
    return apps[0] if apps else None


async def test_registry_gone_before_and_during_a_pull_then_back_completes(
    gated: Device, test_images: dict[str, Any], unique: str, tmp_path: Path
) -> None:
    dev = gated
    images.build_and_push(f"rf-{unique}", "v1", extra="COPY big /big",
                                files={"big": os.urandom(8 * 2**20)})
    reg = PrivateRegistry(root=tmp_path / "registry")
    reg.start()
    proxy = ThrottleProxy(upstream_port=reg.port, rate=1_000_000)
    await proxy.start()
    task: asyncio.Task[None] | None = None
    try:
        copy_image(src=images.REGISTRY, dst=reg.address, repo=f"rf-{unique}", tag="v1")
        ref = f"127.0.0.1:{proxy.port}/rf-{unique}:v1"
        dev.supervisor.set_target(target=dev.compose_target(
            COMPOSE, {"app": test_images["sleeper"].ref}), source=TargetSource.DIRECT)
        await dev.converge()
        old = (await dev.containers())["app"]

        # 1. the registry is gone when the update starts: aborted, naming the cause
        reg.stop()
        await proxy.pause()
        dev.supervisor.set_target(target=dev.compose_target(COMPOSE, {"app": ref}, commit="c2",
                                                            release_id=2),
                                                                source=TargetSource.DIRECT)
        task = asyncio.create_task(dev.supervisor.run())
        app = await wait_for("aborted", lambda: (a := app_of(dev)) and
                             a.update_status == "aborted" and a, 60)
        assert "connection refused" in app.status_message and ref in app.status_message, app
        assert (await dev.containers())["app"].id == old.id, "the old release keeps running"

        # 2. back, then gone again in the middle of the download
        reg.start()
        await proxy.resume()
        await wait_for("download progress", lambda: any(
            i.ref == ref and i.status == "Downloading" and 0 < i.downloaded < i.total
            for i in dev.store.images()), 60)
        assert (app_of(dev) or app).update_status == "downloading"
        report = await collect_status(data_dir=tmp_path, engine_socket=images.DOCKER_SOCK,
                                      scope=dev.supervisor.device.scope)
        [svc] = report["services"]
        assert svc["update"].startswith(f"downloading {ref} "), svc  # "x MB / y MB (n%)"
        assert re.search(r"\d+\.\d MB / \d+\.\d MB \(\d+%\)", svc["update"]), svc
        [img] = [i for i in report["images"] if i["ref"] == ref]
        assert 0 < img["downloaded"] < img["total"] and img["progress"] in svc["update"]
        reg.stop()
        await proxy.pause()
        cause = await wait_for("status naming the interruption", lambda: next((
            i.error for i in dev.store.images() if i.ref == ref and i.error), None) or (
            (a := app_of(dev)) and a.update_status == "aborted" and a.status_message), 60)
        assert "interrupted" in cause or "refused" in cause or "EOF" in cause, cause
        app = await wait_for("the app's status naming it", lambda: (a := app_of(dev)) and (
            "interrupted" in a.status_message or "refused" in a.status_message) and a, 30)
        assert app.update_status in ("downloading", "aborted"), app
        running = (await dev.containers())["app"]
        assert running.id == old.id and running.status == "running"

        # 3. back again: the pull completes and the update is applied
        reg.start()
        await proxy.resume()
        await wait_for("the update", lambda: (a := app_of(dev)) and
                       a.update_status == "done" and a.commit == "c2", 120)
        new = (await dev.containers())["app"]
        assert new.image == ref and new.status == "running"
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await proxy.close()
        reg.stop()
        images.remove_local(f"127.0.0.1:{proxy.port}/rf-{unique}:v1")


def push_arm64_only(registry: str, repo: str) -> str:
    """Push an image index whose only entry is linux/arm64; returns its reference."""
    images.build_and_push(repo, "v1")
    man = httpx.get(f"http://{registry}/v2/{repo}/manifests/v1",
                    headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                            "digest": man.headers["docker-content-digest"],
                            "size": len(man.content),
                            "platform": {"os": "linux", "architecture": "arm64"}}]}
    httpx.put(f"http://{registry}/v2/{repo}/manifests/armonly", json=index, headers={
        "Content-Type": "application/vnd.oci.image.index.v1+json"}).raise_for_status()
    return f"{registry}/{repo}:armonly"


async def test_a_release_without_an_image_for_this_platform_is_rejected(
    gated: Device, test_images: dict[str, Any], registry: str, unique: str
) -> None:
    dev = gated
    dev.supervisor.set_target(target=dev.compose_target(
        COMPOSE, {"app": test_images["sleeper"].ref}), source=TargetSource.DIRECT)
    await dev.converge()
    old = (await dev.containers())["app"]
    ref = push_arm64_only(registry, f"arm-{unique}")
    dev.supervisor.set_target(target=dev.compose_target(COMPOSE, {"app": ref}, commit="c3",
                                                        release_id=3), source=TargetSource.DIRECT)
    for _ in range(3):
        await dev.supervisor.reconcile_once()
    app = app_of(dev)
    assert app is not None and app.update_status == "rejected", app
    assert app.status_message.startswith("release c3 cannot run on this device: image ")
    assert "no variant for linux/amd64 (it has: linux/arm64)" in app.status_message
    assert (await dev.containers())["app"].id == old.id
    assert (await dev.engine.observe()).image_for(ref) is None
