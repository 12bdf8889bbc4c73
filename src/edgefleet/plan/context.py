"""What the planner needs to know beyond engine and target: locks, force, time, intentions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgefleet.plan.intents import Intent


@dataclass(frozen=True, kw_only=True)
class PlanContext:
    """Facts the supervisor gathered for one planning round. Defaults are the safe ones."""

    scope: str = "default"
    """Only networks labelled with this scope are this supervisor's to remove."""
    now_ms: int = 0
    locked: frozenset[str] = frozenset()
    """App uuids where some service holds `updates.lock`."""
    force: bool = False
    """Override update locks for every app (API `force`, config `lockOverride`)."""
    force_apps: frozenset[str] = frozenset()
    stopped_services: frozenset[tuple[str, str]] = frozenset()
    """(app uuid, service) stopped on purpose through the API: keep them stopped."""
    fetch_blocked: Mapping[str, str] = field(default_factory=dict)
    """Image ref → why it must not be fetched now (no disk space, backing off)."""
    handover_complete: frozenset[tuple[str, str]] = frozenset()
    """(app uuid, service) whose new container wrote /tmp/balena/handover-complete."""
    cleanup_images: bool = False
    managed_images: frozenset[str] = frozenset()
    """Image refs this supervisor pulled: the only images it may ever delete."""
    broken_containers: Mapping[str, str] = field(default_factory=dict)
    """Container id → why the engine cannot start it (a stale task left by an engine that
    died mid-start): such a container is removed and created again."""
    intents: tuple[Intent, ...] = ()
    """Changes asked for from outside the loop (API actions); an app with one is planned
    from its intents alone in this round, and reconciled in the next."""

    def is_locked(self, app_uuid: str) -> bool:
        """True when kills, stops and renames of this app must wait."""
        return app_uuid in self.locked and not self.force and app_uuid not in self.force_apps
