"""The executor on the real engine: concurrent steps, failures cancel dependents, and the last
lock check before a kill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgefleet.device.executor import Executor, StepHooks
from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.engine.docker import DockerEngine
from edgefleet.model import naming
from edgefleet.model.service import ServiceSpec
from edgefleet.plan.steps import (
    CreateContainer,
    Plan,
    RemoveContainer,
    RemoveVolume,
    StartContainer,
)
from tests.device.conftest import cleanup_scope

pytestmark = pytest.mark.engine


async def test_kill_waits_for_a_lock_taken_after_planning_and_failures_cancel_dependents(
    tmp_path: Path, unique: str, test_images: dict[str, Any]
) -> None:
    scope = f"x{unique}"
    engine = DockerEngine(scope=scope)
    logs = LogSink(store=Store(path=tmp_path / "db.sqlite"))
    spec = ServiceSpec(app_id=1, app_uuid=f"a{unique}", service_name=f"s{unique}",
                       image=test_images["sleeper"].ref, labels={
                           naming.SUPERVISED: "true", naming.SCOPE: scope,
                           naming.APP_UUID: f"a{unique}", naming.SERVICE_NAME: f"s{unique}"})
    try:
        await engine.pull(spec.image)
        ok = await Executor(engine=engine, logs=logs).run(Plan(steps=(
            CreateContainer(id="c", service=spec, app_uuid=spec.app_uuid),
            StartContainer(id="s", container=spec.container_name, after=frozenset({"c"}),
                           app_uuid=spec.app_uuid))))
        assert ok.ok and ok.done == ["c", "s"]
        cid = (await engine.observe()).containers[0].id
        locked = Executor(engine=engine, logs=logs,
                          hooks=StepHooks(may_disturb=lambda app: app != spec.app_uuid))
        result = await locked.run(Plan(steps=(
            RemoveContainer(id="k", container=cid, app_uuid=spec.app_uuid),
            CreateContainer(id="c2", service=spec, app_uuid=spec.app_uuid,
                            after=frozenset({"k"})))))
        assert "Updates are locked" in result.failed["k"]
        assert result.skipped == ["c2"], "a failed step cancels what depends on it"
        state = await engine.observe()
        assert [c.id for c in state.containers] == [cid] and state.containers[0].is_running
    finally:
        await engine.close()
        cleanup_scope(scope)


async def test_a_best_effort_step_fails_harmlessly_and_its_dependents_run(
    tmp_path: Path, unique: str
) -> None:
    engine = DockerEngine(scope=f"x{unique}")
    logs = LogSink(store=Store(path=tmp_path / "db.sqlite"))
    try:
        result = await Executor(engine=engine, logs=logs).run(Plan(steps=(
            RemoveVolume(id="v", name=f"no-such-volume-{unique}", best_effort=True,
                         reason="orphaned"),
            RemoveVolume(id="w", name=f"no-such-volume-{unique}-2", after=frozenset({"v"})),
        )))
        assert result.tolerated.keys() == {"v"} and result.failed.keys() == {"w"}
        assert result.skipped == [], "the dependent of a tolerated failure ran"
        assert not result.ok
    finally:
        await engine.close()
