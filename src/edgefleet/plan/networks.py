"""Networks in a plan: recreate one whose config changed, remove those no app wants, and
the create -> create edge of `network_mode: service:x`."""

from __future__ import annotations

import dataclasses

from edgefleet.model import naming
from edgefleet.model.engine_state import ContainerState, NetworkState
from edgefleet.model.service import AppSpec, DesiredState, NetworkSpec, ServiceSpec
from edgefleet.plan.builder import Builder
from edgefleet.plan.steps import CreateContainer, CreateNetwork, Noop, RemoveNetwork, Wait


def network_changed(b: Builder, *, have: NetworkState, net: NetworkSpec) -> bool:
    """Ours (this scope) with a recorded hash that differs: its config changed. Networks
    without the label (made by something else, or an older supervisor) are left alone."""
    return (have.labels.get(naming.SCOPE) == b.context.scope and bool(have.config_hash)
            and have.config_hash != net.config_hash())


def recreate_network(b: Builder, *, net: NetworkSpec, prepared: dict[str, str]) -> set[str]:
    """Kill the containers on it, remove it, create it anew; returns the ids of the killed
    containers, whose services are then planned as having none (created after the network).
    A locked app waits: nothing is removed."""
    attached = [c for c in b.observed.containers if net.engine_name in c.networks]
    if any(b.context.is_locked(c.app_uuid) for c in attached):
        b.wait_locked(net.app_uuid)
        return set()
    kills = {k for c in attached
             if (k := b.kill(c, f"network {net.name} changed", gated=False)) is not None}
    removed = b.add(RemoveNetwork(id=f"rmnet:{net.engine_name}", name=net.engine_name,
                                  app_uuid=net.app_uuid, after=frozenset(kills),
                                  reason="config changed"))
    prepared[net.engine_name] = b.add(CreateNetwork(
        id=f"network:{net.engine_name}", network=net, app_uuid=net.app_uuid,
        after=frozenset({removed}), reason="config changed"))
    return {c.id for c in attached}


def remove_networks(b: Builder, *, desired: DesiredState,
                     kills_by_network: dict[str, list[str]]) -> None:
    wanted = {n.engine_name for a in desired.apps.values() for n in a.networks.values()}
    for net in sorted(b.observed.networks, key=lambda n: n.name):
        labels = net.labels
        if labels.get(naming.SCOPE) != b.context.scope or naming.APP_UUID not in labels:
            continue
        if net.name in wanted:
            continue
        kills = kills_by_network.get(net.name, [])
        if "" in kills:  # a container on it could not be killed (locked)
            continue
        attached_alive = [c for c in b.observed.containers if net.name in c.networks
                          and f"remove:{c.id}" not in b.steps]
        if attached_alive:
            continue
        b.add(RemoveNetwork(id=f"rmnet:{net.name}", name=net.name,
                            app_uuid=labels[naming.APP_UUID], after=frozenset(kills)))


def network_service(spec: ServiceSpec) -> str | None:
    """x for `network_mode: service:x`."""
    mode = spec.network_mode
    return mode[len("service:"):].strip() if mode.startswith("service:") else None


def link_network_from(b: Builder, *, app: AppSpec, current: list[ContainerState]) -> None:
    """Each create of a `network_mode: service:x` service names x's container and comes after
    x's create (an edge of the plan, not a lookup at create time); without x's container
    it waits."""
    for sid, step in list(b.steps.items()):
        if not isinstance(step, CreateContainer) or step.app_uuid != app.app_uuid:
            continue
        x = network_service(step.service)
        if x is None:
            continue
        x_create = f"create:{app.app_uuid}:{x}"
        x_spec = app.services.get(x)
        have = [c for c in current if c.service_name == x and (
            x_spec is None or c.name == x_spec.container_name)]
        if x_create in b.steps and x_spec is not None:
            b.steps[sid] = dataclasses.replace(step, network_from=x_spec.container_name,
                                               after=step.after | {x_create})
        elif have:
            b.steps[sid] = dataclasses.replace(step, network_from=have[0].id)
        else:
            del b.steps[sid]
            b.add(Noop(id=f"noop:{sid}", app_uuid=app.app_uuid, why=Wait.DEPENDENCY,
                       waiting_for=f"{x} to be created (network_mode service:{x})"))
