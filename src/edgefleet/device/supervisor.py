"""The reconcile loop: observe → plan → execute until converged; woken by new targets and
engine events; backs off on failure; follows container logs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from edgefleet.device import locks
from edgefleet.device.api_keys import ApiKeys, apps_wanting_keys
from edgefleet.device.engine_port import Engine, PullProgress
from edgefleet.device.executor import ExecutionResult, Executor, StepHooks
from edgefleet.device.followers import LogFollowers
from edgefleet.device.intent_queue import IntentQueue, IntentResult, Outcome
from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.device.supervisor_state import SupervisorState, backoff_s
from edgefleet.device.tasks import cancel_and_wait
from edgefleet.device.update_gate import UpdateGate
from edgefleet.model import formats
from edgefleet.model.context import DeviceContext
from edgefleet.model.engine_state import EngineState
from edgefleet.model.errors import InvalidInput
from edgefleet.model.resolve import desired_state
from edgefleet.model.service import DesiredState
from edgefleet.model.target import TargetState
from edgefleet.model.timeutil import now_ms
from edgefleet.plan.context import PlanContext
from edgefleet.plan.intents import Intent, IntentKind
from edgefleet.plan.planner import plan
from edgefleet.plan.steps import FetchImage, Noop, Plan
from edgefleet.plan.update_status import app_statuses


class PollTrigger(Protocol):
    """What the supervisor API needs of the cloud link: `POST /v1/update` polls at once."""

    def poll_now(self) -> None: ...


class Supervisor:
    """One device's supervisor, owning every supervised object of its scope on one engine."""

    def __init__(self, *, engine: Engine, store: Store, device: DeviceContext, logs: LogSink,
                 poll_interval_s: float = 900.0, lock_override: bool = False,
                 gate: UpdateGate | None = None) -> None:
        self.engine = engine
        self.store = store
        self.device = device
        self.logs = logs
        self.poll_interval_s = poll_interval_s
        self.lock_override = lock_override
        self.gate = gate
        self.rejected: dict[str, str] = {}
        """App uuid → why its newest target was rejected (until a target is accepted)."""
        self.fetch_errors: dict[str, str] = {}
        """Image ref → why its last pull failed (until it is pulled)."""
        self._downloaded: set[str] = set()
        self._running_plan = Plan(steps=())
        self.state = SupervisorState()
        self.stopped_services: set[tuple[str, str]] = set()
        self.force_once = False
        self.api_keys = ApiKeys(store=store)
        self.cloud_gate: Callable[[TargetState], bool] | None = None
        """Asked before a `cloud` target is adopted; False keeps it out (local mode)."""
        self.intents = IntentQueue()
        """API actions waiting for a round of the plan."""
        self.busy = asyncio.Lock()
        """Held during each reconcile round, and by API actions that must not interleave."""
        self.link: PollTrigger | None = None
        """The cloud link of a managed device; None when unmanaged."""
        self._wake = asyncio.Event()
        self._followers = LogFollowers(engine=engine, logs=logs)
        self._target: TargetState | None = None
        self._desired: DesiredState | None = None
        self._recorded: dict[str, tuple[object, ...]] = {}
        self.executor = Executor(engine=engine, logs=logs, hooks=StepHooks(
            on_progress=self._on_progress, on_fetched=self._on_fetched,
            on_fetch_failed=self._on_fetch_failed, may_disturb=self._may_disturb,
            on_image_removed=self._on_image_removed))
        stored = store.load_target()
        if stored is not None:
            try:
                self._accept(formats.parse_v3(data=stored.document, device_uuid=device.uuid))
            except InvalidInput as exc:
                logs.system(f"Stored target is no longer valid, ignoring it: {exc}", error=True)

    # --- targets ---------------------------------------------------------------------------
    @property
    def target(self) -> TargetState | None:
        return self._target

    @property
    def desired(self) -> DesiredState:
        """The resolved target (empty when there is none)."""
        return self._desired or DesiredState()

    def set_target(self, *, target: TargetState, source: str) -> None:
        """Validate and adopt a target; on InvalidInput nothing changes (raised to caller)."""
        if source == "cloud" and self.cloud_gate is not None and not self.cloud_gate(target):
            return
        try:
            desired = desired_state(target=target, device=self._device_for(target))
        except InvalidInput as exc:
            self.logs.system(f"Rejected target state from {source}: {exc}", error=True)
            self._reject(target, str(exc))
            raise
        self.rejected.clear()
        self.store.save_target(source=source, document=target.to_wire())
        self._target, self._desired = target, desired
        self.logs.system(f"Target state applied from {source}")
        self.wake()

    def _reject(self, target: TargetState, why: str) -> None:
        """Mark every app of a refused target `rejected`; the running release stays."""
        current = {a.uuid: a for a in self.store.apps()}
        for app_uuid, app in target.device.apps.items():
            found = app.release
            commit = found[0] if found else "?"
            self.rejected[app_uuid] = f"release {commit} rejected: {why}"
            have = current.get(app_uuid)
            self.store.set_app(uuid=app_uuid, app_id=have.app_id if have else app.id,
                               commit=have.commit if have else None,
                               release_id=have.release_id if have else None,
                               update_status="rejected", status_message=self.rejected[app_uuid])
        self._recorded.clear()

    def _accept(self, target: TargetState) -> None:
        self._target = target
        self._desired = desired_state(target=target, device=self._device_for(target))

    def _device_for(self, target: TargetState) -> DeviceContext:
        """The device context with an API key for every app that asks for one."""
        keys = self.api_keys.ensure_app_keys(app_uuids=apps_wanting_keys(target=target))
        if keys != self.device.supervisor_api_keys:
            self.device = self.device.model_copy(update={"supervisor_api_keys": keys})
        return self.device

    def reresolve(self) -> None:
        """Resolve the current target again (after an API key changed) and reconcile."""
        if self._target is not None:
            self._accept(self._target)
        self.wake()

    def record_fetch(self) -> None:
        """The cloud link fetched the target successfully (for `/v1/healthy`)."""
        self.state.last_fetch_ms = now_ms()

    def may_disturb(self, app_uuid: str) -> bool:
        """False while a running service of the app holds its update lock (no override)."""
        return self._may_disturb(app_uuid)

    def wake(self) -> None:
        """Reconcile now."""
        self._wake.set()

    # --- the loop --------------------------------------------------------------------------
    async def submit(self, intent: Intent) -> IntentResult:
        """Record an intent and return once a round of the plan carried it out (or could
        not: its app is locked, a step failed)."""
        future = self.intents.add(intent)
        self.wake()
        async with self.busy:
            if not future.done():  # the loop did not take it in a round meanwhile: run one
                with contextlib.suppress(Exception):  # the intent's result says what failed
                    await self.reconcile_once()
        self.wake()  # reconcile what the intent changed (a purged app is reinstalled)
        if not future.done():  # pragma: no cover - every round settles its intents
            return IntentResult(Outcome.FAILED, error="not planned")
        return future.result()

    async def reconcile_once(self) -> Plan:
        """One round: observe, plan, execute. Returns the plan that was executed."""
        intents = self.intents.snapshot()
        try:
            return await self._round(intents)
        except BaseException as exc:
            self.intents.fail(intents, str(exc) or type(exc).__name__)
            raise

    def _settle_intents(self, intents: tuple[Intent, ...], the_plan: Plan,
                        result: ExecutionResult | None = None) -> None:
        result = result or ExecutionResult()
        for intent in self.intents.resolve(intents=intents, the_plan=the_plan,
                                           done=result.done, failed=result.failed,
                                           tolerated=result.tolerated):
            for name in intent.services:
                if intent.kind is IntentKind.STOP:
                    self.stopped_services.add((intent.app_uuid, name))
                elif intent.kind is IntentKind.START:
                    self.stopped_services.discard((intent.app_uuid, name))

    async def _round(self, intents: tuple[Intent, ...]) -> Plan:
        observed = await self.engine.observe()
        self.state.observed = observed
        desired = self._desired or DesiredState()
        context = dataclasses.replace(self._context(observed), intents=intents)
        the_plan = plan(observed=observed, desired=desired, context=context)
        if self.gate is not None:
            blocked = await self.gate.blocked(the_plan=the_plan, desired=desired,
                                              observed=observed, now_ms=context.now_ms)
            if blocked:  # no space / cannot run here: plan again without those downloads
                context = dataclasses.replace(
                    context, fetch_blocked={**context.fetch_blocked, **blocked})
                the_plan = plan(observed=observed, desired=desired, context=context)
        self.state.waiting_for = sorted({s.waiting_for for s in the_plan.steps
                                         if isinstance(s, Noop)})
        if not the_plan.actionable:
            self._settle_intents(intents, the_plan)
            self._settled(desired, the_plan)
            return the_plan
        if self.state.app_state != "applying":
            self.state.app_state = "applying"
            self.state.apply_started_ms = now_ms()
            self.state.apply_download_ms = 0
        self._record_status(desired, the_plan)
        self._running_plan = the_plan
        started = now_ms()
        try:
            result = await self.executor.run(the_plan)
        finally:
            if any(isinstance(s, FetchImage) for s in the_plan.actionable):
                self.state.apply_download_ms += now_ms() - started
        self._settle_intents(intents, the_plan, result)
        fetched = {s.app_uuid for s in the_plan.steps
                   if isinstance(s, FetchImage) and s.id in result.done}
        failed = {s.app_uuid for s in the_plan.steps
                  if isinstance(s, FetchImage) and s.id not in result.done}
        if fetched - failed:
            self._downloaded = fetched - failed
            self._record_status(desired, the_plan)
            self._downloaded = set()
        if not result.ok:
            raise RuntimeError("; ".join(f"{k}: {v}" for k, v in sorted(result.failed.items())))
        return the_plan

    def _context(self, observed: EngineState) -> PlanContext:
        locked: set[str] = set()
        root = self.device.lock_root
        for lock in locks.find_locks(lock_root=root, observed=observed):
            if not lock.owner_running:
                lock.path.unlink(missing_ok=True)
                self.logs.system(f"Cleared stale update lock of service '{lock.service}': its"
                                 " container is not running", app_uuid=lock.app_uuid,
                                 service=lock.service)
            elif lock.app_uuid:
                locked.add(lock.app_uuid)
        handover = {
            (a.app_uuid, s.service_name)
            for a in (self._desired.apps.values() if self._desired else ())
            for s in a.services.values()
            if locks.handover_done(lock_root=root, app_id=a.app_id, service=s.service_name)
        }
        managed = frozenset(r.ref for r in self.store.images())
        return PlanContext(
            scope=self.device.scope, now_ms=now_ms(), locked=frozenset(locked),
            force=self.lock_override or self.force_once,
            stopped_services=frozenset(self.stopped_services),
            handover_complete=frozenset(handover), cleanup_images=True,
            managed_images=managed,
        )

    def _settled(self, desired: DesiredState, the_plan: Plan) -> None:
        waiting = bool(the_plan.steps)
        if not waiting:
            if self.state.app_state != "applied":
                self.logs.system("Device state applied")
            self.state.app_state = "applied"
            self.state.apply_started_ms = None
            self.state.last_converged_ms = now_ms()
            self.force_once = False
        self._record_status(desired, the_plan)

    def _record_status(self, desired: DesiredState, the_plan: Plan) -> None:
        statuses = app_statuses(
            desired=desired, the_plan=the_plan, holds=self.gate.holds if self.gate else {},
            rejected=self.rejected, fetch_errors=self.fetch_errors,
            downloaded=frozenset(self._downloaded))
        for app in desired.apps.values():
            status, message = statuses[app.app_uuid]
            record = (app.app_id, app.commit, app.release_id, status, message)
            if self._recorded.get(app.app_uuid) != record:  # write only what changed
                self.store.set_app(uuid=app.app_uuid, app_id=app.app_id, commit=app.commit,
                                   release_id=app.release_id, update_status=status,
                                   status_message=message)
                self._recorded[app.app_uuid] = record
        if set(self._recorded) != set(desired.apps):
            self.store.delete_apps_except(keep=set(desired.apps))
            self._recorded = {k: v for k, v in self._recorded.items() if k in desired.apps}

    async def run(self) -> None:
        """Reconcile forever; also watch engine events and follow container logs."""
        tasks = [asyncio.create_task(self._watch_events()),
                 asyncio.create_task(self.logs.run_flusher())]
        try:
            await self._loop()
        finally:
            await cancel_and_wait(*tasks)
            await self._followers.close()

    async def _loop(self) -> None:
        self.state.loop_running = True
        try:
            await self._turn_forever()
        finally:
            self.state.loop_running = False

    async def _turn_forever(self) -> None:
        while True:
            self._wake.clear()
            self.state.last_loop_ms = now_ms()
            delay = self.poll_interval_s
            try:
                async with self.busy:
                    the_plan = await self.reconcile_once()
                self.state.failures = 0
                self.state.last_error = ""
                if the_plan.actionable:
                    delay = 0
                elif the_plan.steps:  # waiting (locks, health, hand-over): look again soon
                    delay = 2.0
                self._followers.follow_running(self.state.observed)
            except Exception as exc:
                self.state.failures += 1
                self.state.last_error = str(exc)
                delay = backoff_s(failures=self.state.failures, cap_s=self.poll_interval_s)
                self.logs.system(f"Failed to apply target state, retrying in {delay:.1f}s:"
                                 f" {exc}", error=True)
            if delay:
                # asyncio.wait, not wait_for: on Python 3.11, wait_for swallows a cancel that
                # arrives as the wake event fires, and the loop would never stop.
                waiter = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({waiter}, timeout=delay)
                finally:
                    waiter.cancel()

    async def _watch_events(self) -> None:
        failures = 0
        while True:
            try:
                async for event in self.engine.events():
                    failures = 0
                    if (event.type == "container" and event.action in (
                        "start", "die", "destroy", "health_status: healthy",
                        "health_status: unhealthy", "stop", "restart",
                    )) or event.action.startswith("health_status"):
                        if event.action == "die":
                            name = event.attributes.get("io.balena.service-name", "")
                            code = event.attributes.get("exitCode", "?")
                            self.logs.system(f"Service exited '{name}' (exit code {code})",
                                             app_uuid=event.attributes.get(
                                                 "io.balena.app-uuid", ""), service=name)
                        await asyncio.sleep(0.05)  # debounce bursts
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
            await asyncio.sleep(backoff_s(failures=max(failures, 1), cap_s=30))
            self.wake()

    # --- fetch bookkeeping -----------------------------------------------------------------
    def _on_progress(self, step: FetchImage, p: PullProgress) -> None:
        previous = self.state.progress.get(step.image)
        self.state.progress[step.image] = (p.downloaded, p.total)
        if p.note:  # the engine lost the registry mid-download and retries on its own
            why = f"download interrupted (connection to the registry lost), engine: {p.note}"
            self.fetch_errors[step.image] = why
            self.store.set_image(ref=step.image, app_uuid=step.app_uuid,
                                 service_name=step.service_name, status="Downloading",
                                 downloaded=p.downloaded, total=p.total, error=why)
            if self._desired is not None:
                self._record_status(self._desired, self._running_plan)
        elif previous is None or p.percent // 10 != (
            int(100 * previous[0] / previous[1]) // 10 if previous[1] else 0
        ):
            self.store.set_image(ref=step.image, app_uuid=step.app_uuid,
                                 service_name=step.service_name, status="Downloading",
                                 downloaded=p.downloaded, total=p.total)

    def _on_fetched(self, step: FetchImage, image_id: str) -> None:
        self.state.progress.pop(step.image, None)
        self.fetch_errors.pop(step.image, None)
        self.store.set_image(ref=step.image, app_uuid=step.app_uuid,
                             service_name=step.service_name, status="Downloaded",
                             image_id=image_id)

    def _may_disturb(self, app_uuid: str) -> bool:
        if self.lock_override or self.force_once:
            return True
        observed = self.state.observed or EngineState()
        return not any(lock.app_uuid == app_uuid and lock.owner_running
                       for lock in locks.find_locks(lock_root=self.device.lock_root,
                                                    observed=observed))

    def _on_image_removed(self, image_id: str) -> None:
        for record in self.store.images():
            if record.image_id == image_id:
                self.store.delete_image(ref=record.ref)

    def _on_fetch_failed(self, step: FetchImage, error: str) -> None:
        self.state.progress.pop(step.image, None)
        self.fetch_errors[step.image] = error
        self.store.set_image(ref=step.image, app_uuid=step.app_uuid,
                             service_name=step.service_name, status="Failed", error=error)
        if self._desired is not None:  # aborted (naming the cause) until the retry starts
            self._record_status(self._desired, Plan(steps=()))

    def status(self) -> dict[str, Any]:
        """A JSON-able summary of apps, services and images."""
        observed = self.state.observed or EngineState()
        services = [{"app_uuid": c.app_uuid, "service": c.service_name, "status": c.status,
                     "container_id": c.id, "image": c.image, "name": c.name}
                    for c in observed.containers]
        return {"appState": self.state.app_state, "last_error": self.state.last_error,
                "waiting_for": self.state.waiting_for, "services": services,
                "apps": [a.__dict__ for a in self.store.apps()]}
