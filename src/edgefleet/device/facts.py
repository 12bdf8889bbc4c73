"""What the reconciler learns besides the engine's state: the facts of a planning round
(update locks, hand-over markers) and the engine events that wake it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from edgefleet.device import locks
from edgefleet.device.engine_port import Engine
from edgefleet.device.logs import LogSink
from edgefleet.device.supervisor_state import backoff_s
from edgefleet.model.context import DeviceContext
from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import DesiredState
from edgefleet.model.timeutil import now_ms
from edgefleet.plan.context import PlanContext

WAKING = ("start", "die", "destroy", "health_status: healthy", "health_status: unhealthy",
          "stop", "restart")


def plan_context(*, observed: EngineState, desired: DesiredState, device: DeviceContext,
                 logs: LogSink, managed: frozenset[str], force: bool,
                 stopped: frozenset[tuple[str, str]],
                 broken: Mapping[str, str] | None = None) -> PlanContext:
    """The round's PlanContext; a lock whose owner no longer runs is cleared (and logged)."""
    locked: set[str] = set()
    root = device.lock_root
    for lock in locks.find_locks(lock_root=root, observed=observed):
        if not lock.owner_running:
            lock.path.unlink(missing_ok=True)
            logs.system(f"Cleared stale update lock of service '{lock.service}': its"
                        " container is not running", app_uuid=lock.app_uuid,
                        service=lock.service)
        elif lock.app_uuid:
            locked.add(lock.app_uuid)
    handover = {
        (a.app_uuid, s.service_name)
        for a in desired.apps.values()
        for s in a.services.values()
        if locks.handover_done(lock_root=root, app_id=a.app_id, service=s.service_name)
    }
    return PlanContext(
        scope=device.scope, now_ms=now_ms(), locked=frozenset(locked), force=force,
        stopped_services=stopped, handover_complete=frozenset(handover), cleanup_images=True,
        managed_images=managed, broken_containers=dict(broken or {}),
    )


async def watch_events(*, engine: Engine, logs: LogSink, wake: Callable[[], None]) -> None:
    """Wake the reconciler on container events (debounced); log service exits; reconnect
    with backoff when the event stream breaks."""
    failures = 0
    while True:
        try:
            async for event in engine.events():
                failures = 0
                if (event.type == "container" and event.action in WAKING) or (
                    event.action.startswith("health_status")
                ):
                    if event.action == "die":
                        name = event.attributes.get("io.balena.service-name", "")
                        code = event.attributes.get("exitCode", "?")
                        logs.system(f"Service exited '{name}' (exit code {code})",
                                    app_uuid=event.attributes.get("io.balena.app-uuid", ""),
                                    service=name)
                    await asyncio.sleep(0.05)  # debounce bursts
                    wake()
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
        await asyncio.sleep(backoff_s(failures=max(failures, 1), cap_s=30))
        wake()
