"""Runs a Plan's DAG on an engine: a step starts as soon as every step it comes `after` is done;
independent steps run concurrently; a failed step cancels its dependents."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from edgefleet.device.engine_port import Engine, PullProgress
from edgefleet.device.logs import LogSink
from edgefleet.engine.errors import StaleTask
from edgefleet.plan.steps import (
    ConnectNetwork,
    CreateContainer,
    CreateNetwork,
    CreateVolume,
    FetchImage,
    Noop,
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


@dataclass
class ExecutionResult:
    """What happened to each step of a plan."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    tolerated: dict[str, str] = field(default_factory=dict)
    """Best-effort steps that failed harmlessly (their dependents ran)."""
    broken: dict[str, str] = field(default_factory=dict)
    """Container id → why the engine cannot start it (`StaleTask`): to recreate."""

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class StepHooks:
    """Callbacks the supervisor gives the executor (status and image bookkeeping)."""

    on_progress: Callable[[FetchImage, PullProgress], None] = lambda s, p: None
    on_fetched: Callable[[FetchImage, str], None] = lambda s, image_id: None
    on_fetch_failed: Callable[[FetchImage, str], None] = lambda s, err: None
    may_disturb: Callable[[str], bool] = lambda app_uuid: True
    """Last check before a kill/stop/rename of an app's container: False while a service of
    the app holds its update lock (taken since the plan was made) and nothing forces it."""
    registry_auth: Callable[[str], dict[str, str] | None] = lambda image: None
    on_image_removed: Callable[[str], None] = lambda image_id: None
    """Called after a removal attempt (even a failed one: the image is no longer ours)."""


class Executor:
    """Executes plans on one engine, logging balena-style supervisor events."""

    def __init__(self, *, engine: Engine, logs: LogSink, hooks: StepHooks | None = None) -> None:
        self.engine = engine
        self.logs = logs
        self.hooks = hooks or StepHooks()

    async def run(self, plan: Plan) -> ExecutionResult:
        """Run every actionable step, respecting `after`; returns what happened."""
        steps = {s.id: s for s in plan.steps if not isinstance(s, Noop)}
        result = ExecutionResult()
        events = {sid: asyncio.Event() for sid in steps}
        failed: set[str] = set()

        async def run_one(step: Step) -> None:
            try:
                for dep in step.after:
                    if dep in events:
                        await events[dep].wait()
                if any(dep in failed for dep in step.after):
                    failed.add(step.id)
                    result.skipped.append(step.id)
                    return
                await self._execute(step)
                result.done.append(step.id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                svc = getattr(step, "service_name", "")
                if step.best_effort:
                    result.tolerated[step.id] = str(exc)
                    self.logs.system(f"Skipped {_verb(step)} ({step.reason}): {exc}",
                                     app_uuid=step.app_uuid, service=svc)
                    return
                failed.add(step.id)
                result.failed[step.id] = str(exc)
                self.logs.system(f"Failed to {_verb(step)}: {exc}", app_uuid=step.app_uuid,
                                 service=svc, error=True)
                if isinstance(exc, StaleTask) and isinstance(step, StartContainer
                                                              | RestartContainer):
                    result.broken[step.container] = str(exc)
                    self.logs.system(
                        f"Service '{svc}' cannot start: the engine kept a stale task for its"
                        " container (left when the engine died while starting it); removing"
                        " and recreating the container (same config, volumes kept)",
                        app_uuid=step.app_uuid, service=svc, error=True)
            finally:
                events[step.id].set()

        await asyncio.gather(*(run_one(s) for s in steps.values()))
        return result

    async def _execute(self, step: Step) -> None:
        log, eng, app = self.logs.system, self.engine, step.app_uuid
        svc = getattr(step, "service_name", "")
        if _disturbs(step) and not self.hooks.may_disturb(app):
            # a service took its update lock after the plan was made
            raise RuntimeError("Updates are locked, retrying")
        if isinstance(step, FetchImage):
            log(f"Downloading image '{step.image}'", app_uuid=app, service=svc)
            try:
                image_id = await eng.pull(
                    step.image, auth=self.hooks.registry_auth(step.image),
                    progress=lambda p: self.hooks.on_progress(step, p))
            except Exception as exc:
                self.hooks.on_fetch_failed(step, str(exc))
                raise
            self.hooks.on_fetched(step, image_id)
            log(f"Downloaded image '{step.image}'", app_uuid=app, service=svc)
        elif isinstance(step, CreateNetwork):
            log(f"Creating network '{step.network.name}'", app_uuid=app)
            await eng.create_network(step.network)
        elif isinstance(step, CreateVolume):
            log(f"Creating volume '{step.volume.name}'", app_uuid=app)
            await eng.create_volume(step.volume)
        elif isinstance(step, CreateContainer):
            spec = step.service
            for m in spec.mounts:
                if m.type == "bind" and m.target == "/tmp/balena":
                    os.makedirs(m.source, exist_ok=True)
            log(f"Installing service '{spec.service_name}' (image {spec.image})", app_uuid=app,
                service=spec.service_name)
            await eng.create_container(spec, network_from=step.network_from or None)
            log(f"Installed service '{spec.service_name}'", app_uuid=app,
                service=spec.service_name)
        elif isinstance(step, StartContainer):
            log(f"Starting service '{svc}'", app_uuid=app, service=svc)
            await eng.start_container(step.container)
            log(f"Started service '{svc}'", app_uuid=app, service=svc)
        elif isinstance(step, ConnectNetwork):
            await eng.connect_network(step.network, container=step.container,
                                      attachment=step.attachment)
        elif isinstance(step, StopContainer):
            log(f"Stopping service '{svc}'" + (f" ({step.reason})" if step.reason else ""),
                app_uuid=app, service=svc)
            await eng.stop_container(step.container, timeout_s=step.timeout_s)
            log(f"Stopped service '{svc}'", app_uuid=app, service=svc)
        elif isinstance(step, RemoveContainer):
            log(f"Killing service '{svc}' ({step.reason})", app_uuid=app, service=svc)
            await eng.remove_container(step.container, force=True)
            log(f"Killed service '{svc}'", app_uuid=app, service=svc)
        elif isinstance(step, RenameContainer):
            log(f"Updating metadata of service '{svc}'", app_uuid=app, service=svc)
            await eng.rename_container(step.container, new_name=step.new_name)
        elif isinstance(step, RestartContainer):
            log(f"Restarting service '{svc}' ({step.reason})", app_uuid=app, service=svc)
            await eng.restart_container(step.container, timeout_s=step.timeout_s)
        elif isinstance(step, RemoveNetwork):
            log(f"Removing network '{step.name}'", app_uuid=app)
            await eng.remove_network(step.name)
        elif isinstance(step, RemoveVolume):
            log(f"Removing volume '{step.name}'", app_uuid=app)
            await eng.remove_volume(step.name)
        elif isinstance(step, RemoveImage):
            log(f"Deleting image '{step.image_id}' ({step.reason})", app_uuid=app)
            try:
                await eng.remove_image(step.image_id)
            finally:  # even a failed removal: the image is no longer ours
                self.hooks.on_image_removed(step.image_id)
        else:  # pragma: no cover - a new step type without an executor branch
            raise NotImplementedError(type(step).__name__)


def _disturbs(step: Step) -> bool:
    """Steps the last lock check guards: kills, stops, renames, and what intents change
    (not when the intent was forced)."""
    if step.forced:
        return False
    return isinstance(step, StopContainer | RemoveContainer | RenameContainer) or (
        bool(step.intent) and not isinstance(step, Noop))


def _verb(step: Step) -> str:
    name = type(step).__name__
    target = getattr(step, "service_name", "") or getattr(step, "image", "") or getattr(
        step, "name", "")
    return f"{name} {target}".strip()
