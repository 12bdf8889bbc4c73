"""The builder a plan is accumulated in, with the two rules every kill follows: gated by the
app's update lock, and one engine call a step (stop, then remove)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgefleet.model.engine_state import ContainerState, EngineState
from edgefleet.plan.context import PlanContext
from edgefleet.plan.steps import LOCKED, Noop, RemoveContainer, Step, StopContainer, Wait


@dataclass
class Builder:
    """Accumulates steps for one plan; ids are unique and stable."""

    observed: EngineState
    context: PlanContext
    steps: dict[str, Step] = field(default_factory=dict)

    def add(self, step: Step) -> str:
        self.steps.setdefault(step.id, step)
        return step.id

    def gated(self, app_uuid: str, step: Step) -> str | None:
        """Add a stop/rename unless the app's lock forbids it (then a Noop)."""
        if self.context.is_locked(app_uuid):
            self.wait_locked(app_uuid)
            return None
        return self.add(step)

    def wait_locked(self, app_uuid: str) -> None:
        self.add(Noop(id=f"noop:{app_uuid}:locked", app_uuid=app_uuid, why=Wait.LOCKED,
                      waiting_for=LOCKED))

    def kill(self, c: ContainerState, reason: str, *, gated: bool = True) -> str | None:
        """Stop (its own grace period: the `stop_grace_period` it was created with) then
        remove a container: two steps, one engine call each.
        Returns the id of the removal (None when the app's lock forbids it)."""
        if gated and self.context.is_locked(c.app_uuid):
            self.wait_locked(c.app_uuid)
            return None
        after: frozenset[str] = frozenset()
        if c.is_running:
            after = frozenset({self.add(StopContainer(
                id=f"stop:{c.id}", container=c.id, service_name=c.service_name,
                app_uuid=c.app_uuid, reason=reason,
                timeout_s=10.0 if c.stop_timeout_s is None else c.stop_timeout_s))})
        return self.add(RemoveContainer(id=f"remove:{c.id}", container=c.id,
                                        service_name=c.service_name, app_uuid=c.app_uuid,
                                        reason=reason, after=after))
