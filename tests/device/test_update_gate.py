"""The update gate's holds: backoff between checks, release changes, holds dropped when the
app no longer downloads (no engine or registry: the check itself is scripted)."""

from __future__ import annotations

from pathlib import Path

from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.device.update_gate import Hold, UpdateGate
from edgefleet.engine.docker import DockerEngine
from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import AppSpec
from edgefleet.plan.context import PlanContext
from edgefleet.plan.planner import plan
from edgefleet.plan.steps import CreateContainer, FetchImage
from edgefleet.plan.update_status import app_statuses
from tests.plan.helpers import desired


class ScriptedGate(UpdateGate):
    """A gate whose space check answers from a list."""

    answers: list[tuple[str, str] | int | None]
    calls = 0

    async def _check(self, *, app: AppSpec, refs: list[str], observed: EngineState,
                     committed: int) -> tuple[str, str] | int | None:
        self.calls += 1
        return self.answers.pop(0)


async def test_holds_back_off_and_are_dropped(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "s.sqlite")
    gate = ScriptedGate(engine=DockerEngine(socket=str(tmp_path / "none.sock"), scope="x"),
                        logs=LogSink(store=store), cap_s=4)
    no_space = ("aborted", "not enough space for release c2: need 9 MB, 1 MB free")
    gate.answers = [no_space, no_space, 5 * 2**20]
    want = desired({"a1": {"web": {"restart": "always"}}}, commit="c2")
    first = plan(observed=EngineState(), desired=want, context=PlanContext())
    t = 1_000_000
    blocked = await gate.blocked(the_plan=first, desired=want, observed=EngineState(), now_ms=t)
    assert blocked == {"reg/web:1": no_space[1]}
    held = plan(observed=EngineState(), desired=want,
                context=PlanContext(fetch_blocked=blocked))
    assert not any(isinstance(s, FetchImage | CreateContainer) for s in held.steps), \
        "nothing is fetched for a held app"
    status = app_statuses(desired=want, the_plan=held, holds=gate.holds, rejected={},
                          fetch_errors={})
    assert status["a1"] == ("aborted", no_space[1])
    # within the backoff (1 s after one failure) the check is not repeated
    assert await gate.blocked(the_plan=first, desired=want, observed=EngineState(),
                              now_ms=t + 500) == blocked
    assert gate.calls == 1
    # after it: checked again, still no space, next wait is 2 s
    await gate.blocked(the_plan=first, desired=want, observed=EngineState(), now_ms=t + 1100)
    assert gate.calls == 2 and gate.holds["a1"].retry_at_ms == t + 1100 + 2000
    # space freed: no longer held
    assert await gate.blocked(the_plan=first, desired=want, observed=EngineState(),
                              now_ms=t + 3200) == {}
    assert "a1" not in gate.holds
    # a hold goes as soon as the app has nothing to download (its images came anyway)
    gate.holds["a1"] = Hold(release="c2", status="aborted", reason="x", failures=1,
                            retry_at_ms=t * 2)
    empty = plan(observed=EngineState(), desired=desired({}), context=PlanContext())
    await gate.blocked(the_plan=empty, desired=want, observed=EngineState(), now_ms=t)
    assert gate.holds == {}
    store.close()
