"""The typed steps of a plan and the plan itself: a DAG the executor runs concurrently.

Each step has a stable `id` (derived from what it acts on, so the same inputs give the same
plan) and `after`: the ids of steps that must finish first. The executor never decides anything;
it only runs steps whose `after` are done.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from edgefleet.model.service import NetworkAttachment, NetworkSpec, ServiceSpec, VolumeSpec

LOCKED = "Updates are locked"
"""`Noop.waiting_for` of a step held back by an app's update lock."""


@dataclass(frozen=True, kw_only=True)
class Step:
    """Base of every step."""

    id: str
    after: frozenset[str] = field(default_factory=frozenset)
    app_uuid: str = ""
    reason: str = ""
    """Why the planner chose this step, for logs ("config changed: environment")."""
    intent: str = ""
    """The id of the intent (an API action) this step carries out, if any."""
    forced: bool = False
    """Planned under that intent's `force`: the executor's last lock check lets it pass."""
    best_effort: bool = False
    """May fail harmlessly: a failure is logged and recorded as tolerated, not as a failure
    of the plan (dependents still run)."""


@dataclass(frozen=True, kw_only=True)
class FetchImage(Step):
    """Pull an image (never blocked by locks)."""

    image: str
    service_name: str = ""


@dataclass(frozen=True, kw_only=True)
class RemoveImage(Step):
    """Delete an image no release uses any more (or, for delete-then-download, the old one)."""

    image_id: str


@dataclass(frozen=True, kw_only=True)
class CreateNetwork(Step):
    network: NetworkSpec


@dataclass(frozen=True, kw_only=True)
class RemoveNetwork(Step):
    name: str
    """Engine name."""


@dataclass(frozen=True, kw_only=True)
class CreateVolume(Step):
    volume: VolumeSpec


@dataclass(frozen=True, kw_only=True)
class RemoveVolume(Step):
    """Only ever planned for an explicit purge or cleanup, never by reconciliation."""

    name: str


@dataclass(frozen=True, kw_only=True)
class CreateContainer(Step):
    """Create (not start) the container for a service, attached to its first network (the
    others are `ConnectNetwork` steps after it)."""

    service: ServiceSpec
    network_from: str = ""
    """`network_mode: service:x`: the container (name or id) of x whose network stack this
    one joins; the plan's edge orders this create after x's when x is created too."""


@dataclass(frozen=True, kw_only=True)
class ConnectNetwork(Step):
    """Attach a created container to one more of its service's networks."""

    container: str
    network: str
    """Engine name."""
    attachment: NetworkAttachment
    service_name: str = ""


@dataclass(frozen=True, kw_only=True)
class StartContainer(Step):
    """Start a container, by engine name or id."""

    container: str
    service_name: str = ""


@dataclass(frozen=True, kw_only=True)
class StopContainer(Step):
    """Stop without removing (`running: false`, stop-service)."""

    container: str
    service_name: str = ""
    timeout_s: float = 10.0


@dataclass(frozen=True, kw_only=True)
class RemoveContainer(Step):
    """Remove a container (forced: one still running is killed). Reconciliation stops it
    first (a `StopContainer` with the grace period) when it runs."""

    container: str
    service_name: str = ""


@dataclass(frozen=True, kw_only=True)
class RenameContainer(Step):
    """updateMetadata: only the commit/release changed, so only the name changes."""

    container: str
    new_name: str
    service_name: str = ""


@dataclass(frozen=True, kw_only=True)
class RestartContainer(Step):
    """Restart in place (restart-service); never recreates."""

    container: str
    service_name: str = ""
    timeout_s: float = 10.0


class Wait(StrEnum):
    """Why a Noop waits."""

    LOCKED = "locked"
    """An update lock holds kills, stops and renames of the app."""
    FETCH_BLOCKED = "fetch blocked"
    """An image must not be fetched now (no disk space, cannot run here)."""
    DEPENDENCY = "dependency"
    """depends_on: a service to start, be healthy or complete."""
    HANDOVER = "hand-over"
    """The new container of a hand-over service has not taken over yet."""


@dataclass(frozen=True, kw_only=True)
class Noop(Step):
    """Nothing to do now, but the target is not reached: wait for an event (e.g. healthy)."""

    why: Wait
    waiting_for: str = ""
    """For people: what exactly (\"db to be healthy\")."""


StepKind = Literal[
    "fetch", "removeImage", "createNetwork", "removeNetwork", "createVolume", "removeVolume",
    "create", "connect", "start", "stop", "remove", "updateMetadata", "restart", "noop",
]

KIND: dict[type[Step], StepKind] = {
    FetchImage: "fetch", RemoveImage: "removeImage", CreateNetwork: "createNetwork",
    RemoveNetwork: "removeNetwork", CreateVolume: "createVolume", RemoveVolume: "removeVolume",
    CreateContainer: "create", ConnectNetwork: "connect", StartContainer: "start",
    StopContainer: "stop", RemoveContainer: "remove", RenameContainer: "updateMetadata",
    RestartContainer: "restart", Noop: "noop",
}


@dataclass(frozen=True)
class Plan:
    """A DAG of steps. Empty (no steps, or only `Noop`s) means the engine is where it should be."""

    steps: tuple[Step, ...] = ()

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def converged(self) -> bool:
        """True when there is nothing left to do at all."""
        return not self.steps

    @property
    def actionable(self) -> tuple[Step, ...]:
        """Steps that change something (everything but Noop)."""
        return tuple(s for s in self.steps if not isinstance(s, Noop))

    def render(self) -> str:
        """One line a step, in id order: `id [kind] detail <- after, ...` (tests compare
        whole plans, edges included, with this)."""
        return "\n".join(_line(s) for s in sorted(self.steps, key=lambda s: s.id))


def _line(step: Step) -> str:
    detail = _detail(step)
    flags = "".join(f" {f}" for f, on in (("best-effort", step.best_effort),
                                           ("forced", step.forced)) if on)
    edges = f" <- {', '.join(sorted(step.after))}" if step.after else ""
    return f"{step.id} [{KIND[type(step)]}]{' ' + detail if detail else ''}{flags}{edges}"


def _detail(step: Step) -> str:
    if isinstance(step, Noop):
        return f"waits ({step.why}): {step.waiting_for}"
    if isinstance(step, CreateContainer) and step.network_from:
        return f"network from {step.network_from}"
    if isinstance(step, ConnectNetwork):
        return f"{step.container} to {step.network}"
    if isinstance(step, RenameContainer):
        return f"to {step.new_name}"
    return ""
