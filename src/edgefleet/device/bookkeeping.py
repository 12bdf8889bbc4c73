"""Status and image bookkeeping: each app's update status in the store (written only when
it changes), download progress, fetch errors, and the images this supervisor pulled."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from edgefleet.device.engine_port import PullProgress
from edgefleet.device.store import Store
from edgefleet.device.supervisor_state import SupervisorState
from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import DesiredState
from edgefleet.model.target import TargetState
from edgefleet.plan.steps import FetchImage, Plan
from edgefleet.plan.update_status import Hold, app_statuses


class StatusBook:
    """What the store and the status endpoints say about apps and images."""

    def __init__(self, *, store: Store, state: SupervisorState,
                 desired: Callable[[], DesiredState | None],
                 holds: Callable[[], Mapping[str, Hold]]) -> None:
        self.store = store
        self.state = state
        self._desired = desired
        self._holds = holds
        self.rejected: dict[str, str] = {}
        """App uuid → why its newest target was rejected (until a target is accepted)."""
        self.fetch_errors: dict[str, str] = {}
        """Image ref → why its last pull failed (until it is pulled)."""
        self.downloaded: set[str] = set()
        self.running_plan = Plan(steps=())
        self._recorded: dict[str, tuple[object, ...]] = {}

    def reject(self, target: TargetState, why: str) -> None:
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

    def record(self, desired: DesiredState, the_plan: Plan) -> None:
        """Write each app's update status (balena's values) where it changed."""
        statuses = app_statuses(
            desired=desired, the_plan=the_plan, holds=self._holds(), rejected=self.rejected,
            fetch_errors=self.fetch_errors, downloaded=frozenset(self.downloaded))
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

    # --- the executor's hooks --------------------------------------------------------------
    def on_progress(self, step: FetchImage, p: PullProgress) -> None:
        previous = self.state.progress.get(step.image)
        self.state.progress[step.image] = (p.downloaded, p.total)
        if p.note:  # the engine lost the registry mid-download and retries on its own
            why = f"download interrupted (connection to the registry lost), engine: {p.note}"
            self.fetch_errors[step.image] = why
            self.store.set_image(ref=step.image, app_uuid=step.app_uuid,
                                 service_name=step.service_name, status="Downloading",
                                 downloaded=p.downloaded, total=p.total, error=why)
            if (desired := self._desired()) is not None:
                self.record(desired, self.running_plan)
        elif previous is None or p.percent // 10 != (
            int(100 * previous[0] / previous[1]) // 10 if previous[1] else 0
        ):
            self.store.set_image(ref=step.image, app_uuid=step.app_uuid,
                                 service_name=step.service_name, status="Downloading",
                                 downloaded=p.downloaded, total=p.total)

    def on_fetched(self, step: FetchImage, image_id: str) -> None:
        self.state.progress.pop(step.image, None)
        self.fetch_errors.pop(step.image, None)
        self.store.set_image(ref=step.image, app_uuid=step.app_uuid,
                             service_name=step.service_name, status="Downloaded",
                             image_id=image_id)

    def on_fetch_failed(self, step: FetchImage, error: str) -> None:
        self.state.progress.pop(step.image, None)
        self.fetch_errors[step.image] = error
        self.store.set_image(ref=step.image, app_uuid=step.app_uuid,
                             service_name=step.service_name, status="Failed", error=error)
        if (desired := self._desired()) is not None:  # aborted (naming the cause) until
            self.record(desired, Plan(steps=()))     # the retry starts

    def on_image_removed(self, image_id: str) -> None:
        for record in self.store.images():
            if record.image_id == image_id:
                self.store.delete_image(ref=record.ref)

    def status(self) -> dict[str, Any]:
        """A JSON-able summary of apps, services and images."""
        observed = self.state.observed or EngineState()
        services = [{"app_uuid": c.app_uuid, "service": c.service_name, "status": c.status,
                     "container_id": c.id, "image": c.image, "name": c.name}
                    for c in observed.containers]
        return {"appState": self.state.app_state, "last_error": self.state.last_error,
                "waiting_for": self.state.waiting_for, "services": services,
                "apps": [a.__dict__ for a in self.store.apps()]}
