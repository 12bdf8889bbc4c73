"""Planner rules, each checked on a simulated engine (no I/O)."""

from __future__ import annotations

import dataclasses
import re

from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import DesiredState
from edgefleet.plan.context import PlanContext
from edgefleet.plan.intents import Intent, IntentKind
from edgefleet.plan.planner import plan
from edgefleet.plan.steps import (
    CreateContainer,
    Noop,
    Plan,
    RemoveContainer,
    RenameContainer,
    StartContainer,
    StopContainer,
)
from tests.plan.helpers import desired, registry_of
from tests.plan.sim import apply

APP = {"web": {"restart": "always"}, "db": {"restart": "always"}}


def converge(state: EngineState, want: DesiredState, ctx: PlanContext | None = None,
             rounds: int = 8) -> tuple[EngineState, list[Plan]]:
    plans = []
    for _ in range(rounds):
        p = plan(observed=state, desired=want, context=ctx or PlanContext())
        plans.append(p)
        if not p.actionable:
            return state, plans
        state = apply(state, p, registry=registry_of(want))
    raise AssertionError("did not converge")


def kinds(p: Plan) -> list[str]:
    return sorted(type(s).__name__ for s in p.steps)


def text(p: Plan, state: EngineState | None = None) -> str:
    """The whole plan, edges included, with container ids shown as `<name>`."""
    out = p.render()
    for c in sorted(state.containers if state else (), key=lambda c: -len(c.id)):
        out = re.sub(rf"\b{re.escape(c.id)}\b", f"<{c.name}>", out)
    return out


def test_fresh_app_fetches_then_creates_and_starts_everything_in_one_round() -> None:
    want = desired({"a1": APP})
    state, plans = converge(EngineState(), want)
    assert text(plans[0]) == """\
fetch:reg/db:1 [fetch]
fetch:reg/web:1 [fetch]
network:a1_default [createNetwork]"""
    assert text(plans[1]) == """\
create:a1:db [create]
create:a1:web [create]
start:a1:db [start] <- create:a1:db
start:a1:web [start] <- create:a1:web"""
    assert len(plans) == 3 and plans[-1].converged
    assert sorted(c.name.split("_")[0] for c in state.containers) == ["db", "web"]
    assert all(c.status == "running" for c in state.containers)


def test_same_target_twice_plans_nothing() -> None:
    want = desired({"a1": APP})
    state, _ = converge(EngineState(), want)
    assert plan(observed=state, desired=want, context=PlanContext()).converged


def test_env_change_recreates_only_that_service() -> None:
    state, _ = converge(EngineState(), desired({"a1": APP}))
    before = {c.service_name: c.id for c in state.containers}
    changed = desired({"a1": {**APP, "web": {"restart": "always", "env": {"X": "1"}}}})
    p = plan(observed=state, desired=changed, context=PlanContext())
    assert text(p, state) == """\
create:a1:web [create] <- remove:<web_689_1_c1>
remove:<web_689_1_c1> [remove] <- stop:<web_689_1_c1>
start:a1:web [start] <- create:a1:web
stop:<web_689_1_c1> [stop]"""
    state, _ = converge(state, changed)
    after = {c.service_name: c.id for c in state.containers}
    assert after["db"] == before["db"] and after["web"] != before["web"]


def test_a_replaced_container_is_stopped_with_its_own_grace_period() -> None:
    """The kill of an update waits the stop_grace_period the old container was created with
    (its StopTimeout), not the engine's default 10 s; a container without one gets 10 s."""
    short = {"restart": "always", "stop_grace_period": "2s"}
    state, _ = converge(EngineState(), desired({"a1": {"web": short, "db": APP["db"]}}))
    want = desired({"a1": {"web": {**short, "env": {"X": "1"}},
                           "db": {"restart": "always", "env": {"X": "1"}}}})
    p = plan(observed=state, desired=want, context=PlanContext())
    stops = {s.service_name: s.timeout_s for s in p.steps if isinstance(s, StopContainer)}
    assert stops == {"web": 2, "db": 10}
    unknown = state.model_copy(update={"containers": tuple(
        c.model_copy(update={"stop_timeout_s": None}) for c in state.containers)})
    p = plan(observed=unknown, desired=want, context=PlanContext())
    assert {s.timeout_s for s in p.steps if isinstance(s, StopContainer)} == {10}


def test_commit_change_only_renames() -> None:
    state, _ = converge(EngineState(), desired({"a1": APP}))
    p = plan(observed=state, desired=desired({"a1": APP}, commit="c2", release_id=2),
             context=PlanContext())
    assert kinds(p) == ["RenameContainer", "RenameContainer"]
    assert {s.new_name.split("_", 2)[2] for s in p.steps
            if isinstance(s, RenameContainer)} == {"2_c2"}


def test_running_false_stops_without_removing() -> None:
    state, _ = converge(EngineState(), desired({"a1": APP}))
    want = desired({"a1": {**APP, "web": {"restart": "always", "running": False}}})
    p = plan(observed=state, desired=want, context=PlanContext())
    assert kinds(p) == ["StopContainer"]
    state, _ = converge(state, want)
    assert {c.service_name: c.status for c in state.containers} == {"db": "running",
                                                                    "web": "exited"}


def test_removed_service_and_app_are_killed_and_networks_removed() -> None:
    state, _ = converge(EngineState(), desired({"a1": APP, "a2": {"x": {"restart": "no"}}}))
    want = desired({"a1": {"web": {"restart": "always"}}})
    p = plan(observed=state, desired=want, context=PlanContext())
    assert text(p, state) == """\
remove:<db_984_1_c1> [remove] <- stop:<db_984_1_c1>
remove:<x_923_1_c1> [remove] <- stop:<x_923_1_c1>
rmnet:a2_default [removeNetwork] <- remove:<x_923_1_c1>
stop:<db_984_1_c1> [stop]
stop:<x_923_1_c1> [stop]""", "network removal waits for the kills"


def test_volumes_are_created_first_and_never_removed() -> None:
    vols = {"data": {}}
    want = desired({"a1": {"web": {"restart": "always", "volumes": ["data:/d"]},
                           "db": {"restart": "always"}}}, volumes=vols)
    state, _ = converge(EngineState(), want)
    assert [v.name for v in state.volumes] == ["1_data"]
    state, _plans = converge(state, desired({}))
    assert [v.name for v in state.volumes] == ["1_data"]
    assert not state.containers


def test_depends_on_orders_starts() -> None:
    want = desired({"a1": {"web": {"depends_on": ["db"]}, "db": {"restart": "always"}}})
    _state, plans = converge(EngineState(), want)
    start_web = next(s for s in plans[1].steps
                     if isinstance(s, StartContainer) and s.service_name == "web")
    assert "start:a1:db" in start_web.after


def test_service_healthy_waits_for_health() -> None:
    want = desired({"a1": {"web": {"depends_on": {"db": {"condition": "service_healthy"}}},
                           "db": {"restart": "always"}}})
    state, plans = converge(EngineState(), want)
    web = next(c for c in state.containers if c.service_name == "web")
    assert web.status == "created"
    assert any(isinstance(s, Noop) and "db to be healthy" in s.waiting_for
               for s in plans[-1].steps)
    db = next(c for c in state.containers if c.service_name == "db")
    healthy = state.model_copy(update={"containers": tuple(
        c.model_copy(update={"health": "healthy"}) if c.id == db.id else c
        for c in state.containers)})
    p = plan(observed=healthy, desired=want, context=PlanContext())
    assert [s.service_name for s in p.steps if isinstance(s, StartContainer)] == ["web"]


def test_exited_container_with_restart_no_is_left_alone() -> None:
    want = desired({"a1": {"job": {"restart": "no"}, "db": {"restart": "always"}}})
    state, _ = converge(EngineState(), want)
    exited = state.model_copy(update={"containers": tuple(
        c.model_copy(update={"status": "exited", "exit_code": 0}) for c in state.containers)})
    assert plan(observed=exited, desired=want, context=PlanContext()).converged


def test_download_then_kill_fetches_every_image_before_any_kill() -> None:
    state, _ = converge(EngineState(), desired({"a1": APP}))
    new = desired({"a1": {"web": {"restart": "always", "image": "reg/web:2"},
                          "db": {"restart": "always", "image": "reg/db:2"}}}, commit="c2")
    p = plan(observed=state, desired=new, context=PlanContext())
    assert kinds(p) == ["FetchImage", "FetchImage"]


def test_kill_then_download_kills_first() -> None:
    comp = {"restart": "always", "labels": {"io.balena.update.strategy": "kill-then-download"}}
    state, _ = converge(EngineState(), desired({"a1": {"web": comp, "db": comp}}))
    new = desired({"a1": {"web": {**comp, "image": "reg/web:2"}, "db": comp}})
    p = plan(observed=state, desired=new, context=PlanContext())
    assert text(p, state) == """\
fetch:reg/web:2 [fetch] <- remove:<web_689_1_c1>
remove:<web_689_1_c1> [remove] <- stop:<web_689_1_c1>
stop:<web_689_1_c1> [stop]"""


def test_delete_then_download_removes_old_image_before_fetch() -> None:
    comp = {"restart": "always", "labels": {"io.balena.update.strategy": "delete-then-download"}}
    state, _ = converge(EngineState(), desired({"a1": {"web": comp, "db": comp}}))
    new = desired({"a1": {"web": {**comp, "image": "reg/web:2"}, "db": comp}})
    p = plan(observed=state, desired=new, context=PlanContext())
    old = next(c.image_id for c in state.containers if c.service_name == "web")
    assert text(p, state).replace(old, "<old>") == """\
fetch:reg/web:2 [fetch] <- rmimg:<old>
remove:<web_689_1_c1> [remove] <- stop:<web_689_1_c1>
rmimg:<old> [removeImage] best-effort <- remove:<web_689_1_c1>
stop:<web_689_1_c1> [stop]"""
    converge(state, new)


def test_hand_over_keeps_old_until_complete() -> None:
    comp = {"restart": "always", "labels": {"io.balena.update.strategy": "hand-over"}}
    state, _ = converge(EngineState(), desired({"a1": {"web": comp, "db": comp}}))
    new = desired({"a1": {"web": {**comp, "image": "reg/web:2"}, "db": comp}},
                  commit="c2", release_id=2)
    ctx = PlanContext(now_ms=1_767_225_601_000)  # one second after the new one started
    for _ in range(3):
        p = plan(observed=state, desired=new, context=ctx)
        state = apply(state, p, registry=registry_of(new))
    webs = [c for c in state.containers if c.service_name == "web"]
    assert len(webs) == 2 and all(c.status == "running" for c in webs)
    p = plan(observed=state, desired=new, context=ctx)
    assert any(isinstance(s, Noop) and "hand-over" in s.waiting_for for s in p.steps)
    timed_out = PlanContext(now_ms=1_767_225_600_000 + 61_000)  # default timeout is 60 s
    p = plan(observed=state, desired=new, context=timed_out)
    assert [s.service_name for s in p.steps if isinstance(s, RemoveContainer)] == ["web"]
    done = PlanContext(now_ms=ctx.now_ms, handover_complete=frozenset({("a1", "web")}))
    state, _ = converge(state, new, done)
    webs = [c for c in state.containers if c.service_name == "web"]
    assert len(webs) == 1 and webs[0].image == "reg/web:2"


def test_locks_block_kills_but_not_fetches_and_force_overrides() -> None:
    state, _ = converge(EngineState(), desired({"a1": APP}))
    new = desired({"a1": {"web": {"restart": "always", "image": "reg/web:2", "env": {"A": "1"}},
                          "db": {"restart": "always", "env": {"A": "1"}}}})
    locked = PlanContext(locked=frozenset({"a1"}))
    p = plan(observed=state, desired=new, context=locked)
    assert text(p) == "fetch:reg/web:2 [fetch]"
    state = apply(state, p, registry=registry_of(new))
    p = plan(observed=state, desired=new, context=locked)
    assert text(p) == "noop:a1:locked [noop] waits (locked): Updates are locked"
    forced = PlanContext(locked=frozenset({"a1"}), force=True)
    state, _ = converge(state, new, forced)
    assert all(c.config_hash for c in state.containers)


def test_duplicates_after_a_crash_are_removed() -> None:
    want = desired({"a1": APP})
    state, _ = converge(EngineState(), want)
    web = next(c for c in state.containers if c.service_name == "web")
    dup = web.model_copy(update={"id": "dup", "name": "web_old", "status": "created"})
    state = state.model_copy(update={"containers": (*state.containers, dup)})
    p = plan(observed=state, desired=want, context=PlanContext())
    assert [s.container for s in p.steps if isinstance(s, RemoveContainer)] == ["dup"]


def test_stopped_on_purpose_stays_stopped() -> None:
    want = desired({"a1": APP})
    state, _ = converge(EngineState(), want)
    ctx = PlanContext(stopped_services=frozenset({("a1", "web")}))
    p = plan(observed=state, desired=want, context=ctx)
    assert [s.service_name for s in p.steps if isinstance(s, StopContainer)] == ["web"]


def test_cleanup_only_removes_managed_unused_images() -> None:
    state, _ = converge(EngineState(), desired({"a1": APP}))
    new = desired({"a1": {"web": {"restart": "always", "image": "reg/web:2"},
                          "db": {"restart": "always"}}})
    state, _ = converge(state, new)
    ctx = PlanContext(cleanup_images=True, managed_images=frozenset({"reg/web:1"}))
    p = plan(observed=state, desired=new, context=ctx)
    assert kinds(p) == ["RemoveImage"]
    unmanaged = PlanContext(cleanup_images=True)
    assert plan(observed=state, desired=new, context=unmanaged).converged


def test_plan_is_deterministic() -> None:
    want = desired({"a1": APP, "b2": {"x": {"restart": "no"}}})
    a = plan(observed=EngineState(), desired=want, context=PlanContext())
    b = plan(observed=EngineState(), desired=want, context=PlanContext())
    assert a == b and [s.id for s in a.steps] == sorted(s.id for s in a.steps)
    assert not any(isinstance(s, CreateContainer) for s in a.steps)


def test_intents_are_planned_and_gated_like_kills() -> None:
    want = desired({"a1": APP, "a2": {"x": {"restart": "no"}}})
    state, _ = converge(EngineState(), want)
    restart = Intent(id="restart#1", kind=IntentKind.RESTART, app_uuid="a1", services=("web",))
    p = plan(observed=state, desired=want, context=PlanContext(intents=(restart,)))
    assert text(p, state) == "restart:<web_689_1_c1> [restart]"
    purge = Intent(id="purge#2", kind=IntentKind.PURGE, app_uuid="a1")
    locked = PlanContext(locked=frozenset({"a1"}), intents=(purge,))
    assert text(plan(observed=state, desired=want, context=locked), state) == \
        "noop:purge#2:locked [noop] waits (locked): Updates are locked"
    forced = dataclasses.replace(locked, intents=(dataclasses.replace(purge, force=True),))
    p = plan(observed=state, desired=want, context=forced)
    assert text(p, state) == """\
remove:<db_984_1_c1> [remove] forced
remove:<web_689_1_c1> [remove] forced"""
    assert all(s.intent == "purge#2" for s in p.steps)


def test_a_container_the_engine_cannot_start_is_removed_and_recreated_even_when_locked() -> None:
    want = desired({"a1": APP})
    state, _ = converge(EngineState(), want)
    web = next(c for c in state.containers if c.service_name == "web")
    web = web.model_copy(update={"status": "created"})  # its start failed: a stale task
    state = state.model_copy(update={"containers": (
        *(c for c in state.containers if c.service_name != "web"), web)})
    assert kinds(plan(observed=state, desired=want, context=PlanContext())) == [
        "StartContainer"]
    # a lock of another service of the app does not hold back a container that never ran
    ctx = PlanContext(broken_containers={web.id: "task x: already exists"},
                      locked=frozenset({"a1"}))
    p = plan(observed=state, desired=want, context=ctx)
    assert text(p, state) == f"""\
create:a1:web [create] <- remove:<{web.name}>
remove:<{web.name}> [remove]
start:a1:web [start] <- create:a1:web"""
    assert next(s.reason for s in p.steps if isinstance(s, RemoveContainer)).startswith(
        "recreating it")
