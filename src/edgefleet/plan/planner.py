"""`plan(observed, desired, context) -> Plan`: every reconciliation decision, pure.

Called in a loop (observe → plan → execute) until the plan is converged, so each plan only
has to make safe progress; one plan still does all that can be done at once (networks,
volumes, every create in parallel, starts ordered by depends_on).
"""

from __future__ import annotations

from edgefleet.model.engine_state import ContainerState, EngineState
from edgefleet.model.prune import prunable_images
from edgefleet.model.service import AppSpec, DesiredState, ServiceSpec
from edgefleet.model.timeutil import iso_to_ms
from edgefleet.plan.builder import Builder
from edgefleet.plan.context import PlanContext
from edgefleet.plan.intents import intent_steps
from edgefleet.plan.networks import (
    link_network_from,
    network_changed,
    network_service,
    recreate_network,
    remove_networks,
)
from edgefleet.plan.steps import (
    LOCKED,
    ConnectNetwork,
    CreateContainer,
    CreateNetwork,
    CreateVolume,
    FetchImage,
    Noop,
    Plan,
    RemoveImage,
    RenameContainer,
    StartContainer,
    StopContainer,
    Wait,
)

_EXISTING = "existing:"


def plan(*, observed: EngineState, desired: DesiredState, context: PlanContext) -> Plan:
    """The steps that move `observed` toward `desired`, as a DAG."""
    b = Builder(observed=observed, context=context)
    by_app: dict[str, list[ContainerState]] = {}
    for c in observed.containers:
        by_app.setdefault(c.app_uuid, []).append(c)
    kills_by_network: dict[str, list[str]] = {}
    intended = _plan_intents(b, desired=desired)
    for app_uuid in sorted(set(desired.apps) | set(by_app)):
        if app_uuid in intended:
            continue
        app = desired.apps.get(app_uuid)
        current = sorted(by_app.get(app_uuid, []), key=lambda c: (c.name, c.id))
        if app is None:
            for c in current:
                kid = b.kill(c, "app removed from the target")
                for net_name in c.networks:
                    kills_by_network.setdefault(net_name, []).append(kid or "")
            continue
        _plan_app(b, app=app, current=current, kills_by_network=kills_by_network)
    remove_networks(b, desired=desired, kills_by_network=kills_by_network)
    if context.cleanup_images and not any(not isinstance(s, Noop) for s in b.steps.values()):
        _cleanup_images(b, desired=desired)
    return Plan(steps=tuple(b.steps[k] for k in sorted(b.steps)))


def _plan_intents(b: Builder, *, desired: DesiredState) -> set[str]:
    """Add the steps of every intent; returns the apps they touch (not reconciled now)."""
    apps: set[str] = set()
    for intent in b.context.intents:
        for step in intent_steps(intent, observed=b.observed, desired=desired,
                                 context=b.context):
            b.add(step)
        if intent.app_uuid:
            apps.add(intent.app_uuid)
    return apps


def _plan_app(b: Builder, *, app: AppSpec, current: list[ContainerState],
              kills_by_network: dict[str, list[str]]) -> None:
    obs, ctx = b.observed, b.context
    existing_nets = {n.name: n for n in obs.networks}
    prepared: dict[str, str] = {}  # network/volume engine name → step id (if created now)
    for net in sorted(app.networks.values(), key=lambda n: n.name):
        have = existing_nets.get(net.engine_name)
        if have is None:
            prepared[net.engine_name] = b.add(CreateNetwork(
                id=f"network:{net.engine_name}", network=net, app_uuid=app.app_uuid))
        elif network_changed(b, have=have, net=net):
            gone = recreate_network(b, net=net, prepared=prepared)
            current = [c for c in current if c.id not in gone]  # recreated below, after it
    existing_vols = {v.name for v in obs.volumes}
    for vol in sorted(app.volumes.values(), key=lambda v: v.name):
        if vol.engine_name not in existing_vols:
            prepared[vol.engine_name] = b.add(CreateVolume(
                id=f"volume:{vol.engine_name}", volume=vol, app_uuid=app.app_uuid))
    images = {s.image: obs.image_for(s.image) for s in app.services.values()}
    all_present = all(images.values())
    for ref in sorted(r for r, img in images.items() if img is None):
        if ref in ctx.fetch_blocked:
            b.add(Noop(id=f"noop:fetch:{ref}", app_uuid=app.app_uuid, why=Wait.FETCH_BLOCKED,
                       waiting_for=f"{ref}: {ctx.fetch_blocked[ref]}"))
    ready: dict[str, ContainerState] = {}
    pending_start: list[tuple[ServiceSpec, str]] = []
    known = set(app.services)
    for c in current:
        if c.service_name not in known:
            kid = b.kill(c, "service removed from the release")
            for net_name in c.networks:
                kills_by_network.setdefault(net_name, []).append(kid or "")
    by_service: dict[str, list[ContainerState]] = {}
    for c in current:
        by_service.setdefault(c.service_name, []).append(c)
    for name in sorted(app.services):
        spec = app.services[name]
        mine = by_service.get(name, [])
        image = images[spec.image]
        create_after = {prepared[n] for n in _needs(spec) if n in prepared}
        result = _plan_service(b, spec=spec, mine=mine, image_id=image.id if image else None,
                               all_present=all_present, create_after=create_after)
        if isinstance(result, ContainerState):
            ready[name] = result
        elif result is not None:
            pending_start.append((spec, result))
    link_network_from(b, app=app, current=current)
    _plan_starts(b, pending_start=pending_start, ready=ready)
    # a start gated on a dependency that itself could not start must not remain
    _drop_orphan_starts(b)


def _plan_starts(b: Builder, *, pending_start: list[tuple[ServiceSpec, str]],
                 ready: dict[str, ContainerState]) -> None:
    """Start created containers, ordered by depends_on (and network_mode service:x)."""
    starts: dict[str, str] = {}
    for spec, _create_id in pending_start:
        starts[spec.service_name] = f"start:{spec.app_uuid}:{spec.service_name}"
    for spec, create_id in pending_start:
        container = spec.container_name
        if create_id.startswith(_EXISTING):
            container, create_id = create_id[len(_EXISTING):], ""
        after = {create_id} if create_id else set()
        after |= {k for k in b.steps if k.startswith(
            f"connect:{spec.app_uuid}:{spec.service_name}:")}
        x = network_service(spec)
        if x is not None and x in starts:
            after.add(starts[x])
        waiting = None
        for dep, cond in sorted(spec.depends_on.items()):
            dc = ready.get(dep)
            if cond == "service_started":
                if dep in starts:
                    after.add(starts[dep])
                elif dc is None or dc.status == "created":
                    waiting = f"{dep} to start"
            elif cond == "service_healthy" and (dc is None or dc.health != "healthy"):
                waiting = f"{dep} to be healthy"
            elif cond == "service_completed_successfully" and (
                dc is None or dc.status != "exited" or dc.exit_code != 0
            ):
                waiting = f"{dep} to complete successfully"
        sid = starts[spec.service_name]
        if waiting is not None:
            del starts[spec.service_name]
            b.add(Noop(id=f"noop:{sid}", app_uuid=spec.app_uuid, why=Wait.DEPENDENCY,
                       waiting_for=waiting))
            continue
        b.add(StartContainer(id=sid, container=container, app_uuid=spec.app_uuid,
                             service_name=spec.service_name, after=frozenset(after)))


def _needs(spec: ServiceSpec) -> list[str]:
    return [*spec.networks, *(m.source for m in spec.mounts if m.type == "volume")]


def _plan_service(b: Builder, *, spec: ServiceSpec, mine: list[ContainerState],
                  image_id: str | None, all_present: bool,
                  create_after: set[str]) -> ContainerState | str | None:
    """Plan one service. Returns its settled container, the id of a create step whose start
    is still to be planned (`existing:<id>` when it exists but never started), or None."""
    ctx = b.context
    app = spec.app_uuid
    running_wanted = spec.running and (app, spec.service_name) not in ctx.stopped_services

    def good(c: ContainerState) -> bool:
        return spec.hash_matches(c.config_hash) and image_id is not None \
            and c.image_id == image_id and c.id not in ctx.broken_containers

    matching = sorted((c for c in mine if good(c)),
                      key=lambda c: (not c.is_running, c.name != spec.container_name, c.id))
    best = matching[0] if matching else None
    old = [c for c in mine if c is not best]
    if best is not None:
        return _keep(b, spec=spec, best=best, old=old, running_wanted=running_wanted)
    # no good container: fetch, kill and (re)create according to the update strategy
    strategy = spec.update_strategy
    fetch_after: set[str] = set()
    kills: set[str] = set()
    blocked = False
    held = image_id is None and spec.image in ctx.fetch_blocked  # e.g. no disk space
    if old and not held and (
        strategy in ("kill-then-download", "delete-then-download") or image_id
    ):
        if strategy == "hand-over" and image_id and all_present and all(
            c.name != spec.container_name for c in old
        ):
            pass  # the new container starts beside the old one
        elif image_id is None or all_present:
            for c in old:  # a broken one never ran: removing it disturbs nothing
                kid = b.kill(c, _why(b, c, spec),
                             gated=c.is_running or c.id not in ctx.broken_containers)
                if kid is None:
                    blocked = True
                else:
                    kills.add(kid)
            if strategy == "delete-then-download" and image_id is None and kills:
                for c in old:
                    fetch_after.add(b.add(RemoveImage(
                        id=f"rmimg:{c.image_id}", image_id=c.image_id, app_uuid=app,
                        after=frozenset(kills), reason="delete-then-download",
                        best_effort=True)))
            elif image_id is None:
                fetch_after |= kills
    if image_id is None:
        if spec.image not in ctx.fetch_blocked and not (
            strategy in ("kill-then-download", "delete-then-download") and blocked
        ):
            b.add(FetchImage(id=f"fetch:{spec.image}", image=spec.image, app_uuid=app,
                             service_name=spec.service_name, after=frozenset(fetch_after)))
        return None
    if not all_present or blocked:
        return None
    cid = b.add(CreateContainer(id=f"create:{app}:{spec.service_name}", service=spec,
                                app_uuid=app, after=frozenset(create_after | kills),
                                reason="new" if not old else _why(b, old[0], spec)))
    for net, att in list(spec.networks.items())[1:]:
        b.add(ConnectNetwork(id=f"connect:{app}:{spec.service_name}:{net}",
                             container=spec.container_name, network=net, attachment=att,
                             app_uuid=app, service_name=spec.service_name,
                             after=frozenset({cid})))
    return cid if running_wanted else None


def _keep(b: Builder, *, spec: ServiceSpec, best: ContainerState, old: list[ContainerState],
          running_wanted: bool) -> ContainerState | str:
    """A good container exists: kill duplicates and superseded ones (after a hand-over),
    rename it to this release's name, start or stop it as wanted."""
    app = spec.app_uuid
    handover = spec.update_strategy == "hand-over" and best.is_running
    for c in old:
        if handover and c.is_running and not _handover_done(b, spec=spec, new=best):
            b.add(Noop(id=f"noop:handover:{app}:{spec.service_name}", app_uuid=app,
                       why=Wait.HANDOVER, waiting_for=f"hand-over of {spec.service_name}"))
            continue
        b.kill(c, "superseded")
    if old and not handover and any(c.name == spec.container_name for c in old):
        return best
    if best.name != spec.container_name:
        if any(c.name == spec.container_name for c in old):
            return best
        b.gated(app, RenameContainer(
            id=f"rename:{best.id}", container=best.id, new_name=spec.container_name,
            app_uuid=app, service_name=spec.service_name, reason="release changed"))
    if running_wanted and best.status == "created":
        return f"{_EXISTING}{best.id}"
    if not running_wanted and best.is_running:
        b.gated(app, StopContainer(id=f"stop:{best.id}", container=best.id, app_uuid=app,
                                   service_name=spec.service_name,
                                   timeout_s=spec.stop_grace_period_s))
    return best


def _why(b: Builder, c: ContainerState, spec: ServiceSpec) -> str:
    if c.id in b.context.broken_containers:
        return "recreating it: the engine cannot start this container"
    return "config changed" if not spec.hash_matches(c.config_hash) else "image changed"


def _handover_done(b: Builder, *, spec: ServiceSpec, new: ContainerState) -> bool:
    if (spec.app_uuid, spec.service_name) in b.context.handover_complete:
        return True
    started = iso_to_ms(new.started_at)
    return started is not None and b.context.now_ms - started >= spec.handover_timeout_ms


def _drop_orphan_starts(b: Builder) -> None:
    changed = True
    while changed:
        changed = False
        for sid, step in list(b.steps.items()):
            if any(a not in b.steps for a in step.after):
                del b.steps[sid]
                changed = True


def _cleanup_images(b: Builder, *, desired: DesiredState) -> None:
    obs = b.observed
    for cand in prunable_images(
        observed=obs, used_ids={c.image_id for c in obs.containers},
        desired_refs=[s.image for a in desired.apps.values() for s in a.services.values()],
        managed_refs=b.context.managed_images,
    ):
        b.add(RemoveImage(id=f"rmimg:{cand.image_id}", image_id=cand.image_id,
                          reason="unused", best_effort=True))


__all__ = ["LOCKED", "plan"]
