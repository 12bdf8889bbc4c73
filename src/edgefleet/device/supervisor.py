"""The reconcile loop: observe → plan → execute until converged; woken by new targets and
engine events; backs off on failure; follows container logs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from edgefleet.device import facts, locks
from edgefleet.device.api_keys import ApiKeys
from edgefleet.device.bookkeeping import StatusBook
from edgefleet.device.engine_port import Engine
from edgefleet.device.executor import ExecutionResult, Executor, StepHooks
from edgefleet.device.followers import LogFollowers
from edgefleet.device.intent_queue import IntentQueue, IntentResult, Outcome
from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.device.supervisor_state import SupervisorState, backoff_s
from edgefleet.device.targets import TargetKeeper, TargetSource
from edgefleet.device.tasks import cancel_and_wait
from edgefleet.device.update_gate import UpdateGate
from edgefleet.model.context import DeviceContext
from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import DesiredState
from edgefleet.model.target import TargetState
from edgefleet.model.timeutil import now_ms
from edgefleet.plan.context import PlanContext
from edgefleet.plan.intents import Intent, IntentKind
from edgefleet.plan.planner import plan
from edgefleet.plan.steps import FetchImage, Noop, Plan


class PollTrigger(Protocol):
    """What the supervisor API needs of the cloud link: `POST /v1/update` polls at once."""

    def poll_now(self) -> None: ...


class Supervisor:
    """One device's supervisor, owning every supervised object of its scope on one engine."""

    def __init__(self, *, engine: Engine, store: Store, device: DeviceContext, logs: LogSink,
                 poll_interval_s: float = 900.0, lock_override: bool = False,
                 gate: UpdateGate | None = None,
                 cloud_filter: Callable[[TargetState], bool] | None = None) -> None:
        self.engine = engine
        self.store = store
        self.logs = logs
        self.poll_interval_s = poll_interval_s
        self.lock_override = lock_override
        self.gate = gate
        self.state = SupervisorState()
        self.stopped_services: set[tuple[str, str]] = set()
        self.force_once = False
        self.broken: dict[str, str] = {}
        """Container id → why the engine cannot start it: the planner recreates these."""
        self._broken_refs: dict[str, str] = {}
        """Containers (name or id, as the failed step named them) newly found broken."""
        self._quick_retries = 0
        self.intents = IntentQueue()
        """API actions waiting for a round of the plan."""
        self.busy = asyncio.Lock()
        """Held during each reconcile round (API intents run in one)."""
        self.link: PollTrigger | None = None
        """The cloud link of a managed device; None when unmanaged."""
        self._wake = asyncio.Event()
        self._followers = LogFollowers(engine=engine, logs=logs)
        self.book = StatusBook(store=store, state=self.state, desired=lambda: (
            self.targets.resolved()), holds=lambda: self.gate.holds if self.gate else {})
        self.targets = TargetKeeper(store=store, device=device, logs=logs,
                                    on_change=self._target_changed,
                                    on_reject=self.book.reject, admit_cloud=cloud_filter)
        self.executor = Executor(engine=engine, logs=logs, hooks=StepHooks(
            on_progress=self.book.on_progress, on_fetched=self.book.on_fetched,
            on_fetch_failed=self.book.on_fetch_failed, may_disturb=self.may_disturb,
            on_image_removed=self.book.on_image_removed))

    # --- targets (TargetKeeper) --------------------------------------------------------------
    @property
    def device(self) -> DeviceContext:
        return self.targets.device

    @property
    def target(self) -> TargetState | None:
        return self.targets.target

    @property
    def desired(self) -> DesiredState:
        """The resolved target (empty when there is none)."""
        return self.targets.desired

    @property
    def api_keys(self) -> ApiKeys:
        return self.targets.api_keys

    @property
    def rejected(self) -> dict[str, str]:
        return self.book.rejected

    def set_target(self, *, target: TargetState, source: TargetSource) -> None:
        """Validate and adopt a target; on InvalidInput nothing changes (raised to caller)."""
        self.targets.set_target(target=target, source=source)

    def _target_changed(self) -> None:
        self.book.rejected.clear()
        self.wake()

    def reresolve(self) -> None:
        """Resolve the current target again (after an API key changed) and reconcile."""
        self.targets.reresolve()
        self.wake()

    def record_fetch(self) -> None:
        """The cloud link fetched the target successfully (for `/v1/healthy`)."""
        self.state.last_fetch_ms = now_ms()

    def may_disturb(self, app_uuid: str) -> bool:
        """False while a running service of the app holds its update lock (no override)."""
        if self.lock_override or self.force_once:
            return True
        observed = self.state.observed or EngineState()
        return not any(lock.app_uuid == app_uuid and lock.owner_running
                       for lock in locks.find_locks(lock_root=self.device.lock_root,
                                                    observed=observed))

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
        self._resolve_broken(observed)
        desired = self.desired
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
        self.book.record(desired, the_plan)
        self.book.running_plan = the_plan
        started = now_ms()
        try:
            result = await self.executor.run(the_plan)
        finally:
            if any(isinstance(s, FetchImage) for s in the_plan.actionable):
                self.state.apply_download_ms += now_ms() - started
        self._settle_intents(intents, the_plan, result)
        self._broken_refs.update(result.broken)
        fetched = {s.app_uuid for s in the_plan.steps
                   if isinstance(s, FetchImage) and s.id in result.done}
        failed = {s.app_uuid for s in the_plan.steps
                  if isinstance(s, FetchImage) and s.id not in result.done}
        if fetched - failed:
            self.book.downloaded = fetched - failed
            self.book.record(desired, the_plan)
            self.book.downloaded = set()
        if not result.ok:
            raise RuntimeError("; ".join(f"{k}: {v}" for k, v in sorted(result.failed.items())))
        return the_plan

    def _resolve_broken(self, observed: EngineState) -> None:
        """Key the containers found broken by id (a step may have named one by name), and
        forget those that are gone (removed: their recreation has no stale task)."""
        for c in observed.containers:
            why = self._broken_refs.get(c.id) or self._broken_refs.get(c.name)
            if why and c.status == "created":
                self.broken[c.id] = why
        self._broken_refs.clear()
        present = {c.id for c in observed.containers}
        self.broken = {cid: why for cid, why in self.broken.items() if cid in present}

    def _context(self, observed: EngineState) -> PlanContext:
        return facts.plan_context(
            observed=observed, desired=self.desired, device=self.device, logs=self.logs,
            managed=frozenset(r.ref for r in self.store.images()),
            force=self.lock_override or self.force_once,
            stopped=frozenset(self.stopped_services), broken=self.broken)

    def _settled(self, desired: DesiredState, the_plan: Plan) -> None:
        waiting = bool(the_plan.steps)
        if not waiting:
            if self.state.app_state != "applied":
                self.logs.system("Device state applied")
            self.state.app_state = "applied"
            self.state.apply_started_ms = None
            self.state.last_converged_ms = now_ms()
            self.force_once = False
        self.book.record(desired, the_plan)

    async def run(self) -> None:
        """Reconcile forever; also watch engine events and follow container logs."""
        tasks = [asyncio.create_task(facts.watch_events(engine=self.engine, logs=self.logs,
                                                        wake=self.wake)),
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
                self._quick_retries = 0
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
                if self._broken_refs and self._quick_retries < 3:  # recreate them now
                    self._quick_retries += 1
                    delay = 0.5
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

    def status(self) -> dict[str, Any]:
        """A JSON-able summary of apps, services and images."""
        return self.book.status()
