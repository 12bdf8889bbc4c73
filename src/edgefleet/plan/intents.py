"""Intents: container changes asked for from outside the loop (the supervisor API, later remote
actions). They are facts for the planner like any other: it turns each into steps, gated by the
app's update lock and the intent's `force` exactly like the kills of an update, and the executor
runs them. Nothing else changes containers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edgefleet.model import naming
from edgefleet.model.engine_state import ContainerState, EngineState
from edgefleet.model.service import DesiredState, ServiceSpec
from edgefleet.plan.context import PlanContext
from edgefleet.plan.steps import (
    LOCKED,
    Noop,
    RemoveContainer,
    RemoveVolume,
    RestartContainer,
    StartContainer,
    Step,
    StopContainer,
    Wait,
)


class IntentKind(StrEnum):
    RESTART = "restart"
    """Restart containers in place (never recreates)."""
    STOP = "stop"
    """Stop running containers (the supervisor keeps the service stopped)."""
    START = "start"
    """Start containers that are not running."""
    PURGE = "purge"
    """Remove the app's containers and volumes; the next round installs it afresh."""
    RECREATE = "recreate"
    """Remove the services' containers; the next round creates them anew (new API keys)."""
    CLEANUP_VOLUMES = "cleanup-volumes"
    """Remove volumes of apps no longer in the target (best effort: in-use ones stay)."""


@dataclass(frozen=True, kw_only=True)
class Intent:
    """One requested change. `services` empty means every service of the app."""

    id: str
    kind: IntentKind
    app_uuid: str = ""
    services: tuple[str, ...] = ()
    force: bool = False
    """Override the app's update lock for this intent only."""
    reason: str = "requested through the API"

    def selects(self, c: ContainerState) -> bool:
        return c.app_uuid == self.app_uuid and (
            not self.services or c.service_name in self.services)

    def containers(self, observed: EngineState) -> list[ContainerState]:
        return sorted((c for c in observed.containers if self.selects(c)),
                      key=lambda c: (c.service_name, c.id))


def intent_steps(intent: Intent, *, observed: EngineState, desired: DesiredState,
                 context: PlanContext) -> list[Step]:
    """The steps of one intent; a single Noop (waiting for the lock) while the app is locked
    and the intent is not forced: then nothing of the app is touched."""
    app, why, iid = intent.app_uuid, intent.reason, intent.id
    if intent.kind is IntentKind.CLEANUP_VOLUMES:
        return [RemoveVolume(id=f"rmvol:{v.name}", name=v.name, intent=iid, best_effort=True,
                             app_uuid=v.labels[naming.APP_UUID], reason="orphaned")
                for v in sorted(observed.volumes, key=lambda v: v.name)
                if v.labels.get(naming.APP_UUID, "") not in ("", *desired.apps)]
    if context.is_locked(app) and not intent.force:
        return [Noop(id=f"noop:{iid}:locked", app_uuid=app, intent=iid, why=Wait.LOCKED,
                     waiting_for=LOCKED)]
    force = intent.force
    spec = desired.apps.get(app)
    out: list[Step] = []
    for c in intent.containers(observed):
        step = _container_step(intent, c, spec.services.get(c.service_name) if spec else None)
        if step is not None:
            out.append(step)
    if intent.kind is IntentKind.PURGE:
        removed = frozenset(s.id for s in out)
        out += [RemoveVolume(id=f"rmvol:{v.name}", name=v.name, app_uuid=app, intent=iid,
                             forced=force, after=removed, reason=f"purge {why}")
                for v in sorted(observed.volumes, key=lambda v: v.name)
                if v.labels.get(naming.APP_UUID) == app]
    return out


def _container_step(intent: Intent, c: ContainerState, svc: ServiceSpec | None) -> Step | None:
    grace = svc.stop_grace_period_s if svc else 10.0
    kind, cid, name, app = intent.kind, c.id, c.service_name, intent.app_uuid
    why, iid, force = f"{kind} {intent.reason}", intent.id, intent.force
    if kind is IntentKind.RESTART:
        return RestartContainer(id=f"restart:{cid}", container=cid, service_name=name,
                                app_uuid=app, intent=iid, forced=force, reason=why,
                                timeout_s=grace)
    if kind is IntentKind.STOP and c.is_running:
        return StopContainer(id=f"stop:{cid}", container=cid, service_name=name, app_uuid=app,
                             intent=iid, forced=force, reason=why, timeout_s=grace)
    if kind is IntentKind.START and not c.is_running:
        return StartContainer(id=f"start:{cid}", container=cid, service_name=name,
                              app_uuid=app, intent=iid, forced=force, reason=why)
    if kind in (IntentKind.PURGE, IntentKind.RECREATE):
        return RemoveContainer(id=f"remove:{cid}", container=cid, service_name=name,
                               app_uuid=app, intent=iid, forced=force, reason=why)
    return None
