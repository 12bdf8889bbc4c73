"""A simulated engine for planner tests: applies a Plan's steps to an EngineState."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from edgefleet.model import naming
from edgefleet.model.engine_state import (
    ContainerState,
    EngineState,
    ImageState,
    NetworkState,
    VolumeState,
)
from edgefleet.plan.steps import (
    ConnectNetwork,
    CreateContainer,
    CreateNetwork,
    CreateVolume,
    FetchImage,
    Plan,
    RemoveContainer,
    RemoveImage,
    RemoveNetwork,
    RemoveVolume,
    RenameContainer,
    RestartContainer,
    StartContainer,
    Step,
    StopContainer,
)

_ids = itertools.count(1)


def image_id_for(ref: str) -> str:
    return "sha256:" + (ref.encode().hex() * 4)[:64]


def topo(plan: Plan) -> list[Step]:
    """Steps in an order that respects `after`; asserts the plan is a DAG over its own ids."""
    steps = {s.id: s for s in plan.steps}
    for s in plan.steps:
        assert s.after <= set(steps), f"{s.id} waits for a step not in the plan"
    done: list[Step] = []
    seen: set[str] = set()
    remaining = dict(steps)
    while remaining:
        ready = [s for s in remaining.values() if s.after <= seen]
        assert ready, f"cycle among {sorted(remaining)}"
        for s in sorted(ready, key=lambda s: s.id):
            done.append(s)
            seen.add(s.id)
            del remaining[s.id]
    return done


def apply(state: EngineState, plan: Plan, *, registry: Iterable[str]) -> EngineState:
    """The engine after executing every step of the plan (in a valid order)."""
    containers = {c.id: c for c in state.containers}
    images = {i.id: i for i in state.images}
    networks = {n.name: n for n in state.networks}
    volumes = {v.name: v for v in state.volumes}
    available = set(registry)
    for step in topo(plan):
        if isinstance(step, FetchImage):
            assert step.image in available, f"unknown image {step.image}"
            iid = image_id_for(step.image)
            images[iid] = ImageState(id=iid, repo_tags=(step.image,))
        elif isinstance(step, RemoveImage):
            assert all(c.image_id != step.image_id for c in containers.values())
            images.pop(step.image_id, None)
        elif isinstance(step, CreateNetwork):
            assert step.network.engine_name not in networks
            networks[step.network.engine_name] = NetworkState(
                id=step.network.engine_name, name=step.network.engine_name,
                labels={naming.APP_UUID: step.network.app_uuid, naming.SUPERVISED: "true",
                        naming.SCOPE: "default",
                        naming.CONFIG_HASH: step.network.config_hash()},
                config_hash=step.network.config_hash())
        elif isinstance(step, RemoveNetwork):
            assert all(step.name not in c.networks for c in containers.values()), step.name
            networks.pop(step.name)
        elif isinstance(step, CreateVolume):
            volumes[step.volume.engine_name] = VolumeState(name=step.volume.engine_name)
        elif isinstance(step, RemoveVolume):
            assert step.intent, f"reconciliation removed volume {step.name}"
            volumes.pop(step.name, None)
        elif isinstance(step, CreateContainer):
            spec = step.service
            assert all(c.name != spec.container_name for c in containers.values()), "name taken"
            img = next((i for i in images.values() if spec.image in i.repo_tags), None)
            assert img is not None, f"create before image {spec.image} is present"
            for net in spec.networks:
                assert net in networks, f"create before network {net}"
            for m in spec.mounts:
                if m.type == "volume":
                    assert m.source in volumes, f"create before volume {m.source}"
            cid = f"c{next(_ids)}"
            containers[cid] = ContainerState(
                id=cid, name=spec.container_name, image=spec.image, image_id=img.id,
                labels={**spec.labels, naming.CONFIG_HASH: spec.config_hash()},
                status="created", networks=tuple(spec.networks),
                stop_timeout_s=int(spec.stop_grace_period_s))  # as translate sets StopTimeout
        elif isinstance(step, StartContainer):
            c = next(c for c in containers.values()
                     if step.container in (c.id, c.name))
            containers[c.id] = c.model_copy(update={"status": "running",
                                                    "started_at": "2026-01-01T00:00:00Z"})
        elif isinstance(step, RestartContainer):
            c = containers[step.container]
            containers[c.id] = c.model_copy(update={"status": "running"})
        elif isinstance(step, StopContainer):
            c = containers[step.container]
            containers[c.id] = c.model_copy(update={"status": "exited", "exit_code": 0})
        elif isinstance(step, ConnectNetwork):
            c = next(c for c in containers.values() if step.container in (c.id, c.name))
            assert step.network in networks and step.network in c.networks
        elif isinstance(step, RemoveContainer):
            containers.pop(step.container)
        elif isinstance(step, RenameContainer):
            c = containers[step.container]
            assert all(o.name != step.new_name for o in containers.values())
            containers[c.id] = c.model_copy(update={"name": step.new_name})
    return EngineState(containers=tuple(containers.values()), images=tuple(images.values()),
                       networks=tuple(networks.values()), volumes=tuple(volumes.values()))
