"""The target keeper: validates and adopts targets from their sources, resolves them into
the desired state (with the apps' API keys), and remembers the last one in the store."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from edgefleet.device.api_keys import ApiKeys, apps_wanting_keys
from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.model import formats
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput
from edgefleet.model.resolve import desired_state
from edgefleet.model.service import DesiredState
from edgefleet.model.target import TargetState


class TargetSource(StrEnum):
    """Where a target came from (stored with it)."""

    CLOUD = "cloud"
    """The fleet server's poll."""
    APPS_JSON = "apps.json"
    """First boot of a preloaded device."""
    LOCAL = "local"
    """Local mode: `POST /v2/local/target-state` (balena push <ip>)."""
    CLOUD_KEPT = "cloud-kept"
    """Leaving local mode: the cloud target kept aside meanwhile."""
    LOCAL_EXIT = "local-exit"
    """Leaving local mode with no cloud target kept: no apps."""
    DIRECT = "direct"
    """Set in-process by a caller (tests, benches)."""


class TargetKeeper:
    """Sets, accepts or rejects targets; `admit_cloud` is asked before a cloud target is
    adopted (local mode keeps it aside)."""

    def __init__(self, *, store: Store, device: DeviceContext, logs: LogSink,
                 on_change: Callable[[], None],
                 on_reject: Callable[[TargetState, str], None],
                 admit_cloud: Callable[[TargetState], bool] | None = None) -> None:
        self.store = store
        self.device = device
        self.logs = logs
        self.api_keys = ApiKeys(store=store)
        self.admit_cloud = admit_cloud
        self._on_change = on_change
        self._on_reject = on_reject
        self.target: TargetState | None = None
        self._desired: DesiredState | None = None
        stored = store.load_target()
        if stored is not None:
            try:
                self._accept(formats.parse_v3(data=stored.document, device_uuid=device.uuid))
            except InvalidInput as exc:
                logs.system(f"Stored target is no longer valid, ignoring it: {exc}", error=True)

    @property
    def desired(self) -> DesiredState:
        """The resolved target (empty when there is none)."""
        return self._desired or DesiredState()

    def resolved(self) -> DesiredState | None:
        """The resolved target, None before the first one."""
        return self._desired

    def set_target(self, *, target: TargetState, source: TargetSource) -> None:
        """Validate and adopt a target; on InvalidInput nothing changes (raised to caller)."""
        source = TargetSource(source)
        if source is TargetSource.CLOUD and self.admit_cloud is not None and (
            not self.admit_cloud(target)
        ):
            return
        try:
            desired = desired_state(target=target, device=self._device_for(target))
        except InvalidInput as exc:
            self.logs.system(f"Rejected target state from {source}: {exc}", error=True)
            self._on_reject(target, str(exc))
            raise
        self.store.save_target(source=source, document=target.to_wire())
        self.target, self._desired = target, desired
        self.logs.system(f"Target state applied from {source}")
        self._on_change()

    def reresolve(self) -> None:
        """Resolve the current target again (after an API key changed)."""
        if self.target is not None:
            self._accept(self.target)

    def _accept(self, target: TargetState) -> None:
        self.target = target
        self._desired = desired_state(target=target, device=self._device_for(target))

    def _device_for(self, target: TargetState) -> DeviceContext:
        """The device context with an API key for every app that asks for one."""
        keys = self.api_keys.ensure_app_keys(app_uuids=apps_wanting_keys(target=target))
        if keys != self.device.supervisor_api_keys:
            self.device = self.device.model_copy(update={"supervisor_api_keys": keys})
        return self.device
