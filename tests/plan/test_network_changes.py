"""A network whose configuration changed is removed and recreated (pure planner)."""

from __future__ import annotations

from edgefleet.model.engine_state import EngineState
from edgefleet.plan.context import PlanContext
from edgefleet.plan.planner import LOCKED, plan
from edgefleet.plan.steps import (
    CreateContainer,
    CreateNetwork,
    Noop,
    RemoveContainer,
    RemoveNetwork,
)
from tests.plan.helpers import desired
from tests.plan.test_planner import converge, text

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
    assert text(first, state) == """\
create:a1:web [create] <- network:a1_backend
network:a1_backend [createNetwork] <- rmnet:a1_backend
remove:<web_689_1_c1> [remove] <- stop:<web_689_1_c1>
rmnet:a1_backend [removeNetwork] <- remove:<web_689_1_c1>
start:a1:web [start] <- create:a1:web
stop:<web_689_1_c1> [stop]""", "only the service on the network; recreated once it exists"
    create = next(s for s in first.steps if isinstance(s, CreateNetwork))
    assert create.network.ipam_config[0].subnet == "10.9.1.0/24"

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
    assert not any(isinstance(s, RemoveContainer | RemoveNetwork | CreateNetwork)
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


def test_network_mode_service_is_a_create_to_create_edge() -> None:
    want = desired({"a1": {"vpn": {"restart": "always", "networks": ["front", "back"]},
                           "app": {"restart": "always", "network_mode": "service:vpn"}}},
                   networks={"front": {}, "back": {}})
    state, plans = converge(EngineState(), want)
    assert text(plans[1]) == """\
connect:a1:vpn:a1_back [connect] vpn_937_1_c1 to a1_back <- create:a1:vpn
create:a1:app [create] network from vpn_937_1_c1 <- create:a1:vpn
create:a1:vpn [create]
start:a1:app [start] <- create:a1:app, start:a1:vpn
start:a1:vpn [start] <- connect:a1:vpn:a1_back, create:a1:vpn"""
    # only the dependent changes: it joins the running container by id, no edge needed
    vpn = next(c for c in state.containers if c.service_name == "vpn")
    changed = desired({"a1": {"vpn": {"restart": "always", "networks": ["front", "back"]},
                              "app": {"restart": "always", "network_mode": "service:vpn",
                                      "env": {"X": "1"}}}},
                      networks={"front": {}, "back": {}})
    p = plan(observed=state, desired=changed, context=PlanContext())
    create = next(s for s in p.steps if isinstance(s, CreateContainer))
    assert create.network_from == vpn.id and not create.after & {"create:a1:vpn"}
