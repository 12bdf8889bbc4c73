"""Update strategies and locks on the real engine (first part of issue 3)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edgefleet.device.locks import find_locks
from edgefleet.device.targets import TargetSource
from tests.device.conftest import Device

pytestmark = pytest.mark.engine

LOOP = ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]


def compose(strategy: str, env: str) -> str:
    return f"""
services:
  app:
    command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
    labels: {{io.balena.update.strategy: {strategy}}}
    environment: {{V: "{env}"}}
"""


def unique_target(device: Device, compose_yaml: str, imgs: dict[str, str], *,
                  commit: str = "c1", release_id: int = 1) -> Any:
    """A target whose commit (part of container names) is unique to this device, so runs of
    these tests in other checkouts on the shared engine never collide on names."""
    return device.compose_target(compose_yaml, imgs, commit=f"{commit}{device.app_uuid[-6:]}",
                                 release_id=release_id)


async def events_during(device: Device, work: Any) -> list[tuple[str, str]]:
    """(action, image or name) of engine events for this scope while `work` runs."""
    seen: list[tuple[str, str]] = []

    async def watch() -> None:
        async for ev in device.engine.events():
            if ev.type == "image" and ev.action == "pull":
                seen.append(("pull", ev.id))
            elif ev.type == "container" and ev.action in ("start", "kill", "die", "destroy"):
                seen.append((ev.action, ev.attributes.get("name", "")))

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.3)
    await work
    await asyncio.sleep(0.5)
    task.cancel()
    return seen


@pytest.mark.parametrize("strategy", ["download-then-kill", "kill-then-download",
                                      "delete-then-download"])
async def test_strategy_orders_pull_kill_and_start(
    device: Device, test_images: dict[str, Any], strategy: str, unique: str
) -> None:
    from tests.support import images

    v1 = images.build_and_push(f"upd-{unique}", "v1", cmd=LOOP)
    v2 = images.build_and_push(f"upd-{unique}", "v2", cmd=LOOP, extra="RUN echo 2 > /v")
    device.supervisor.set_target(target=unique_target(device,
        compose(strategy, "1"), {"app": v1.ref}), source=TargetSource.DIRECT)
    await device.converge()
    old = (await device.containers())["app"]
    device.supervisor.set_target(target=unique_target(device,
        compose(strategy, "1"), {"app": v2.ref}, commit="c2", release_id=2),
            source=TargetSource.DIRECT)
    seen = await events_during(device, device.converge())
    # image events are engine-wide: other tests pull at the same time
    pull = seen.index(("pull", v2.ref))
    kill = next(i for i, (a, n) in enumerate(seen) if a in ("die", "destroy") and
                n == old.name)
    start = max(i for i, (a, _) in enumerate(seen) if a == "start")
    if strategy == "download-then-kill":
        assert pull < kill < start, seen
    else:
        assert kill < pull < start, seen
    new = (await device.containers())["app"]
    assert new.id != old.id and new.image == v2.ref


async def test_hand_over_keeps_the_old_container_until_the_new_one_signals(
    device: Device, unique: str
) -> None:
    from tests.support import images

    v1 = images.build_and_push(f"ho-{unique}", "v1", cmd=LOOP)
    v2 = images.build_and_push(f"ho-{unique}", "v2", extra="RUN echo 2 > /v", cmd=LOOP)
    device.supervisor.set_target(target=unique_target(device,
        compose("hand-over", "1"), {"app": v1.ref}), source=TargetSource.DIRECT)
    await device.converge()
    old = (await device.containers())["app"]
    signalling = compose("hand-over", "1").replace(
        '"trap exit TERM; while true; do sleep 1; done"',
        '"sleep 2; touch /tmp/balena/handover-complete; trap exit TERM;'
        ' while true; do sleep 1; done"')
    device.supervisor.set_target(target=unique_target(device,
        signalling, {"app": v2.ref}, commit="c2", release_id=2), source=TargetSource.DIRECT)
    for _ in range(3):  # pull, then start the new one beside the old one
        await device.supervisor.reconcile_once()
    observed = await device.engine.observe()
    running = [c for c in observed.containers if c.status == "running"]
    assert {c.image for c in running} == {v1.ref, v2.ref}, "both run during the hand-over"
    await device.converge(rounds=20)
    final = [c for c in (await device.engine.observe()).containers]
    assert len(final) == 1 and final[0].image == v2.ref and final[0].id != old.id


async def test_a_held_lock_blocks_the_kill_until_released_and_stale_locks_are_cleared(
    device: Device, test_images: dict[str, Any]
) -> None:
    imgs = {"app": test_images["sleeper"].ref}
    device.supervisor.set_target(target=unique_target(device, compose("download-then-kill",
                                                                      "1"), imgs),
                                 source=TargetSource.DIRECT)
    await device.converge()
    old = (await device.containers())["app"]
    lock = Path(device.supervisor.device.lock_root) / "77" / "app" / "updates.lock"
    lock.write_text("")
    observed = await device.engine.observe()
    assert [x.service for x in find_locks(lock_root=device.supervisor.device.lock_root,
                                          observed=observed)] == ["app"]
    device.supervisor.set_target(target=unique_target(device,
        compose("download-then-kill", "2"), imgs), source=TargetSource.DIRECT)
    for _ in range(3):
        plan = await device.supervisor.reconcile_once()
    assert "Updates are locked" in device.supervisor.state.waiting_for
    [app] = device.store.apps()
    assert (app.update_status, app.status_message) == ("downloaded", "Updates are locked")
    assert (await device.containers())["app"].id == old.id, "a locked service is not killed"
    lock.unlink()
    await device.converge()
    assert (await device.containers())["app"].id != old.id
    # a lock left behind by a container that is not running does not block the next update
    current = (await device.containers())["app"]
    from tests.support import images as img

    with img.engine_client() as c:
        c.post(f"/containers/{current.id}/stop", params={"t": "1"})
    lock.write_text("")
    device.supervisor.set_target(target=unique_target(device,
        compose("download-then-kill", "3"), imgs), source=TargetSource.DIRECT)
    await device.converge()
    assert not lock.exists()
    assert any("Cleared stale update lock" in m for m in device.log_messages())
    assert plan is not None


async def test_force_overrides_a_lock(device: Device, test_images: dict[str, Any]) -> None:
    imgs = {"app": test_images["sleeper"].ref}
    device.supervisor.set_target(target=unique_target(device, compose("download-then-kill",
                                                                      "1"), imgs),
                                 source=TargetSource.DIRECT)
    await device.converge()
    old = (await device.containers())["app"]
    (Path(device.supervisor.device.lock_root) / "77" / "app" / "updates.lock").write_text("")
    device.supervisor.force_once = True
    device.supervisor.set_target(target=unique_target(device,
        compose("download-then-kill", "2"), imgs), source=TargetSource.DIRECT)
    await device.converge()
    assert (await device.containers())["app"].id != old.id
