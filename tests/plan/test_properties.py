"""Property tests: from any start state, planning and applying converges, never removes a
volume, and never kills a locked app's containers without force; intents (API actions) never
disturb a locked app without force and never touch another app."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.model import naming
from edgefleet.model.engine_state import ContainerState, EngineState, ImageState, VolumeState
from edgefleet.plan.context import PlanContext
from edgefleet.plan.intents import Intent, IntentKind
from edgefleet.plan.planner import plan
from edgefleet.plan.steps import (
    Noop,
    RemoveContainer,
    RemoveVolume,
    RenameContainer,
    RestartContainer,
    StartContainer,
    StopContainer,
)
from tests.plan.helpers import desired, registry_of
from tests.plan.sim import apply, image_id_for

WANT = desired({
    "a1": {"web": {"restart": "always", "depends_on": ["db"], "volumes": ["data:/d"]},
           "db": {"restart": "always", "env": {"K": "v"}}},
    "a2": {"job": {"restart": "no", "running": False}, "ui": {"restart": "always"}},
}, volumes={"data": {}})
REGISTRY = registry_of(WANT) | {"reg/old:1"}

container = st.builds(
    lambda i, app, svc, status, hash_ok, img, name_ok: (i, app, svc, status, hash_ok, img,
                                                        name_ok),
    st.integers(0, 10_000), st.sampled_from(["a1", "a2", "gone"]),
    st.sampled_from(["web", "db", "job", "ui", "extra"]),
    st.sampled_from(["created", "running", "exited"]), st.booleans(),
    st.sampled_from(sorted(REGISTRY)), st.booleans(),
)


def build_state(raw: list[tuple[int, str, str, str, bool, str, bool]],
                images: list[str], volumes: bool) -> EngineState:
    specs = {(a.app_uuid, s.service_name): s for a in WANT.apps.values()
             for s in a.services.values()}
    containers = []
    for n, (i, app, svc, status, hash_ok, img, name_ok) in enumerate(raw):
        spec = specs.get((app, svc))
        labels = {naming.APP_UUID: app, naming.SERVICE_NAME: svc, naming.SUPERVISED: "true",
                  naming.CONFIG_HASH: spec.config_hash() if spec and hash_ok else "stale"}
        name = spec.container_name if spec and name_ok else f"{svc}_{i}_{n}"
        if any(c.name == name for c in containers):
            name = f"{name}-{n}"
        containers.append(ContainerState(
            id=f"x{n}", name=name, image=img, image_id=image_id_for(img), labels=labels,
            status=status, exit_code=0 if status == "exited" else None))
    present = {*images, *(c.image for c in containers)}
    return EngineState(
        containers=tuple(containers),
        images=tuple(ImageState(id=image_id_for(r), repo_tags=(r,)) for r in sorted(present)),
        volumes=(VolumeState(name="1_data"),) if volumes else ())


@given(st.lists(container, max_size=8), st.lists(st.sampled_from(sorted(REGISTRY))),
       st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_converges_from_any_start_and_keeps_volumes(raw: list, images: list[str],
                                                    volumes: bool) -> None:
    state = build_state(raw, images, volumes)
    had_volume = volumes
    for _ in range(6):
        p = plan(observed=state, desired=WANT, context=PlanContext())
        if not p.actionable:
            break
        state = apply(state, p, registry=REGISTRY)
        if had_volume:
            assert any(v.name == "1_data" for v in state.volumes)
    else:
        raise AssertionError("did not converge in 6 rounds")
    by_service = {}
    for c in state.containers:
        assert (c.app_uuid, c.service_name) not in by_service, "duplicate container"
        by_service[(c.app_uuid, c.service_name)] = c
    for app in WANT.apps.values():
        for spec in app.services.values():
            c = by_service.pop((app.app_uuid, spec.service_name))
            assert c.config_hash == spec.config_hash() and c.name == spec.container_name
            assert c.image_id == image_id_for(spec.image)
            if spec.running and c.status == "created":
                raise AssertionError(f"{spec.service_name} never started")
            if not spec.running:
                assert c.status != "running"
    assert not by_service, f"extra containers: {sorted(by_service)}"


@given(st.lists(container, max_size=8), st.lists(st.sampled_from(sorted(REGISTRY))))
@settings(max_examples=100, deadline=None)
def test_locked_apps_are_never_killed_without_force(raw: list, images: list[str]) -> None:
    state = build_state(raw, images, True)
    ctx = PlanContext(locked=frozenset({"a1", "gone"}))
    for _ in range(4):
        p = plan(observed=state, desired=WANT, context=ctx)
        for s in p.steps:
            if isinstance(s, RemoveContainer | StopContainer | RenameContainer):
                assert s.app_uuid not in ("a1", "gone"), f"{s.id} despite the lock"
        state = apply(state, p, registry=REGISTRY)


DISTURBING = (StopContainer, RenameContainer, RestartContainer, RemoveContainer,
              RemoveVolume)
intent = st.builds(
    lambda kind, app, services, force: Intent(id=f"{kind}#1", kind=kind, app_uuid=app,
                                              services=tuple(services), force=force),
    st.sampled_from([k for k in IntentKind if k is not IntentKind.CLEANUP_VOLUMES]),
    st.sampled_from(["a1", "a2", "gone"]),
    st.lists(st.sampled_from(["web", "db", "job", "ui", "extra"]), max_size=2, unique=True),
    st.booleans())


@given(st.lists(container, max_size=8), st.lists(st.sampled_from(sorted(REGISTRY))), intent,
       st.sets(st.sampled_from(["a1", "a2", "gone"])))
@settings(max_examples=150, deadline=None)
def test_intents_respect_locks_and_stay_in_their_app(raw: list, images: list[str],
                                                     it: Intent, locked: set[str]) -> None:
    state = build_state(raw, images, True)
    ctx = PlanContext(locked=frozenset(locked), intents=(it,))
    p = plan(observed=state, desired=WANT, context=ctx)
    mine = [s for s in p.steps if s.intent == it.id]
    for s in mine:
        assert s.app_uuid == it.app_uuid, f"{s.id} touches another app"
        if isinstance(s, RestartContainer | StopContainer | StartContainer | RemoveContainer):
            c = next(c for c in state.containers if c.id == s.container)
            assert it.selects(c), f"{s.id}: a container the intent did not name"
    if it.kind is IntentKind.RESTART:
        assert not any(isinstance(s, RemoveContainer) for s in mine), \
            "a restart never recreates"
    if it.app_uuid in locked and not it.force:
        assert [type(s) for s in mine] == [Noop], "locked: the intent only waits"
        for s in p.steps:
            if s.app_uuid == it.app_uuid:
                assert not isinstance(s, DISTURBING), f"{s.id} despite the lock"
    apply(state, p, registry=REGISTRY)  # a valid DAG the engine can run
