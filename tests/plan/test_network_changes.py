"""A network whose configuration changed is removed and recreated (pure planner)."""

from __future__ import annotations

from edgefleet.model.engine_state import EngineState
from edgefleet.plan.context import PlanContext
from edgefleet.plan.planner import LOCKED, plan
from edgefleet.plan.steps import (
    CreateContainer,
    CreateNetwork,
    KillContainer,
    Noop,
    RemoveNetwork,
)
from tests.plan.helpers import desired
from tests.plan.test_planner import converge

SVC = {"web": {"restart": "always", "networks": ["backend"]},
       "other": {"restart": "always"}}


def net(subnet: str) -> dict[str, object]:
    return {"backend": {"ipam": {"config": [{"subnet": subnet}]}}}


def test_changed_network_config_recreates_the_network_and_its_containers() -> None:
    v1 = desired({"a1": SVC}, networks=net("10.9.0.0/24"))
    state, _ = converge(EngineState(), v1)
    old_web = next(c for c in state.containers if c.service_name == "web")
    other = next(c for c in state.containers if c.service_name == "other")
    assert plan(observed=state, desired=v1, context=PlanContext()).converged, "stable"

    v2 = desired({"a1": SVC}, networks=net("10.9.1.0/24"))
    first = plan(observed=state, desired=v2, context=PlanContext())
    by_type = {type(s).__name__: s for s in first.steps}
    kill, rm, create = (by_type["KillContainer"], by_type["RemoveNetwork"],
                        by_type["CreateNetwork"])
    assert isinstance(kill, KillContainer) and kill.container == old_web.id
    assert isinstance(rm, RemoveNetwork) and rm.after == {kill.id}
    assert isinstance(create, CreateNetwork) and create.after == {rm.id}
    assert create.network.ipam_config[0].subnet == "10.9.1.0/24"
    assert [s for s in first.steps if isinstance(s, KillContainer)] == [kill], \
        "a service not on the network is left alone"
    [recreate] = [s for s in first.steps if isinstance(s, CreateContainer)]
    assert recreate.service.service_name == "web" and create.id in recreate.after, \
        "the container is recreated in the same plan, once the new network exists"

    state, plans = converge(state, v2)
    assert len(plans) == 2, "one plan does it all, the second is empty"
    web = next(c for c in state.containers if c.service_name == "web")
    assert web.id != old_web.id and web.status == "running"
    assert any(c.id == other.id for c in state.containers)
    [backend] = [n for n in state.networks if n.name.endswith("_backend")]
    assert backend.config_hash == v2.apps["a1"].networks["backend"].config_hash()


def test_a_locked_app_keeps_its_changed_network_until_unlocked() -> None:
    v1 = desired({"a1": SVC}, networks=net("10.9.0.0/24"))
    state, _ = converge(EngineState(), v1)
    v2 = desired({"a1": SVC}, networks=net("10.9.1.0/24"))
    locked = plan(observed=state, desired=v2, context=PlanContext(locked=frozenset({"a1"})))
    assert not any(isinstance(s, KillContainer | RemoveNetwork | CreateNetwork)
                   for s in locked.steps)
    assert any(isinstance(s, Noop) and s.waiting_for == LOCKED for s in locked.steps)
    forced = plan(observed=state, desired=v2,
                  context=PlanContext(locked=frozenset({"a1"}), force=True))
    assert any(isinstance(s, RemoveNetwork) for s in forced.steps)


def test_networks_without_a_hash_label_are_not_recreated() -> None:
    v1 = desired({"a1": SVC}, networks=net("10.9.0.0/24"))
    state, _ = converge(EngineState(), v1)
    unlabelled = state.model_copy(update={"networks": tuple(
        n.model_copy(update={"config_hash": ""}) for n in state.networks)})
    v2 = desired({"a1": SVC}, networks=net("10.9.1.0/24"))
    assert plan(observed=unlabelled, desired=v2, context=PlanContext()).converged
