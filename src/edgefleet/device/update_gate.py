"""The gate before pulls: is there disk space for the new release, can it run on this device?

It runs in the supervisor between planning and executing: when a plan fetches images of an
app, the gate estimates the space the app's missing images need (`engine.space`) and compares
it with the free space of the engine's data root. An app that does not fit is *held*: its
images go into `PlanContext.fetch_blocked`, so the planner fetches and kills nothing of it
(the running release stays), status says why, and the check is retried with backoff
min(2^n x 500 ms, poll interval). A release whose image has no variant for this device's
platform is held as `rejected`. The planner stays pure: the gate only feeds it facts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx

from edgefleet.device.delta import DeltaEngine
from edgefleet.device.logs import LogSink
from edgefleet.device.supervisor_state import backoff_s
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.errors import EngineError
from edgefleet.engine.registry import NoMatchingPlatform, RegistryClient
from edgefleet.engine.space import (
    MB,
    EngineFacts,
    engine_facts,
    estimate,
    free_bytes,
    manifests_for,
    present_diff_ids,
)
from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import AppSpec, DesiredState
from edgefleet.plan.steps import FetchImage, Plan


@dataclass(frozen=True)
class Hold:
    """Why an app's update may not download now, and when to look again."""

    release: str
    status: str
    """`aborted` (no space: retried) or `rejected` (cannot run on this device)."""
    reason: str
    failures: int
    retry_at_ms: int


def release_label(app: AppSpec) -> str:
    """How messages name a release: its commit, else its id."""
    return app.commit or str(app.release_id or "?")


class UpdateGate:
    """Holds updates that cannot be downloaded now (see the module doc)."""

    def __init__(self, *, engine: DockerEngine, logs: LogSink, cap_s: float,
                 auth: Callable[[str], dict[str, str] | None] = lambda registry: None) -> None:
        self.engine = engine
        self.logs = logs
        self.cap_s = cap_s
        self.auth = auth
        self.holds: dict[str, Hold] = {}
        self._facts: EngineFacts | None = None
        self._client: RegistryClient | None = None
        self._warned_root = False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def hold_of(self, app_uuid: str) -> Hold | None:
        return self.holds.get(app_uuid)

    async def blocked(self, *, the_plan: Plan, desired: DesiredState, observed: EngineState,
                      now_ms: int) -> dict[str, str]:
        """Image ref → reason, for every missing image of every app that must not be
        downloaded now. Checks apps whose fetches the plan would run."""
        fetching = sorted({s.app_uuid for s in the_plan.steps if isinstance(s, FetchImage)})
        for gone in set(self.holds) - set(fetching):  # removed, or its images came anyway
            del self.holds[gone]
        result: dict[str, str] = {}
        committed = 0  # bytes promised to apps checked earlier in this round
        for app_uuid in fetching:
            app = desired.apps.get(app_uuid)
            if app is None:
                continue
            refs = sorted({s.image for s in app.services.values()
                           if observed.image_for(s.image) is None})
            hold = self.holds.get(app_uuid)
            if hold is not None and hold.release == release_label(app) and (
                now_ms < hold.retry_at_ms
            ):
                result.update(dict.fromkeys(refs, hold.reason))
                continue
            verdict = await self._check(app=app, refs=refs, observed=observed,
                                        committed=committed)
            if verdict is None:
                self.holds.pop(app_uuid, None)
                continue
            if isinstance(verdict, int):
                committed += verdict
                self.holds.pop(app_uuid, None)
                continue
            status, reason = verdict
            failures = hold.failures + 1 if hold and hold.release == release_label(app) else 1
            delay = backoff_s(failures=failures, cap_s=self.cap_s)
            self.holds[app_uuid] = Hold(release=release_label(app), status=status,
                                        reason=reason, failures=failures,
                                        retry_at_ms=now_ms + int(delay * 1000))
            self.logs.system(f"{reason}; keeping the current release, retrying in {delay:.1f}s",
                             app_uuid=app_uuid, error=True)
            result.update(dict.fromkeys(refs, reason))
        return result

    async def _check(self, *, app: AppSpec, refs: list[str], observed: EngineState,
                     committed: int) -> tuple[str, str] | int | None:
        """(status, reason) when held; else the bytes this app will take (None: unknown)."""
        if not refs:
            return None
        label = release_label(app)
        try:
            facts = await self._engine_facts()
            client = self._registry(facts)
            manifests = await manifests_for(client=client, refs=refs)
            present = await present_diff_ids(self.engine)
        except NoMatchingPlatform as exc:
            return "rejected", f"release {label} cannot run on this device: {exc}"
        except EngineError as exc:
            # the engine may reach the registry where we cannot (mirrors, proxies): let it try,
            # its own error will name the cause if it fails too
            self.logs.system(f"Could not estimate the space release {label} needs ({exc});"
                             " downloading anyway", app_uuid=app.app_uuid)
            return None
        need = estimate(manifests=manifests, present=present)
        deltas = await self._delta_space(refs)
        if deltas > need.need_bytes:  # a delta writes uncompressed layers (twice, in the
            need = replace(need, need_bytes=deltas)  # engine): it may need more than a pull
        free = free_bytes(path=facts.data_root)
        if free is None:
            if not self._warned_root:
                self.logs.system(f"Cannot see the engine's data root {facts.data_root}: the"
                                 " free-space check before downloads is skipped")
                self._warned_root = True
            return None
        free += _freed_by_deleting(app=app, observed=observed)
        available = free - committed
        if need.need_bytes > available:
            return "aborted", (f"not enough space for release {label}: need "
                               f"{_mb(need.need_bytes)} MB, {max(available, 0) // MB} MB free")
        applying = f", {_mb(deltas)} MB to apply its deltas" if deltas else ""
        self.logs.system(f"Release {label} needs about {_mb(need.need_bytes)} MB"
                         f" ({need.missing_layers} new layers, {_mb(need.download_bytes)} MB"
                         f" to download{applying}); {available // MB} MB free",
                         app_uuid=app.app_uuid)
        return need.need_bytes

    async def _delta_space(self, refs: list[str]) -> int:
        """What applying these images' deltas needs (0 without deltas, or when unknown)."""
        if not isinstance(self.engine, DeltaEngine):
            return 0
        try:
            return await self.engine.delta_space(refs)
        except (httpx.HTTPError, ValueError, KeyError, EngineError) as exc:
            self.logs.system(f"Could not ask the server what applying the deltas needs ({exc});"
                             " counting the pull's need only")
            return 0

    async def _engine_facts(self) -> EngineFacts:
        if self._facts is None:
            self._facts = await engine_facts(self.engine)
        return self._facts

    def _registry(self, facts: EngineFacts) -> RegistryClient:
        if self._client is None:
            self._client = RegistryClient(platform=facts.platform, insecure=facts.insecure,
                                          auth=self.auth)
        return self._client


def _freed_by_deleting(*, app: AppSpec, observed: EngineState) -> int:
    """Bytes `delete-then-download` services free before they pull: their old images, when
    no other container uses them."""
    freed = 0
    for spec in app.services.values():
        if spec.update_strategy != "delete-then-download" or observed.image_for(spec.image):
            continue
        for c in observed.containers:
            if c.app_uuid != app.app_uuid or c.service_name != spec.service_name:
                continue
            users = [o for o in observed.containers if o.image_id == c.image_id]
            img = next((i for i in observed.images if i.id == c.image_id), None)
            if img is not None and all(u.service_name == spec.service_name for u in users):
                freed += img.size
    return freed


def _mb(n: int) -> int:
    return max(0, (n + MB - 1) // MB)
