"""Local mode (compat §9): the device ignores the cloud target and takes its target from
`POST /v2/local/target-state` (balena CLI's `balena push <ip>`). Refused on production devices;
leaving it removes the local app and returns to the cloud target."""

from __future__ import annotations

import contextlib
import json
from typing import Protocol

from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.device.targets import TargetSource
from edgefleet.model import formats
from edgefleet.model.config import DeviceConfig
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput
from edgefleet.model.target import DeviceTarget, TargetState

CONFIG_VARS = ("BALENA_SUPERVISOR_LOCAL_MODE", "RESIN_SUPERVISOR_LOCAL_MODE",
               "SUPERVISOR_LOCAL_MODE")
PRODUCTION_REFUSAL = ("local mode is refused on a production device (config.json"
                      " developmentMode is false or osVariant is prod); use a development"
                      " device to push with `balena push <ip>`")


class LocalModeRefused(Exception):
    """Local mode asked for on a production-variant device."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "on", "yes")


def requested_by(*, target: TargetState) -> bool | None:
    """What the target's config variables say about local mode (None: nothing)."""
    for name in CONFIG_VARS:
        if name in target.device.config:
            return _truthy(target.device.config[name])
    return None


class Targets(Protocol):
    """What local mode needs of the supervisor: its target and a way to set one."""

    @property
    def device(self) -> DeviceContext: ...

    @property
    def target(self) -> TargetState | None: ...

    def set_target(self, *, target: TargetState, source: TargetSource) -> None: ...


class LocalMode:
    """Whether the device is in local mode, and the cloud target kept aside meanwhile.

    Built before the supervisor, whose target keeper gets `admit_cloud_target` as its cloud
    filter at construction; `start(targets)` then hands it the supervisor. (Given a
    `supervisor`, it does both at once: tests.)"""

    def __init__(self, *, config: DeviceConfig, store: Store | None = None,
                 logs: LogSink | None = None, supervisor: Targets | None = None) -> None:
        self.config = config
        self.refusal = ""
        self.enabled = False
        if supervisor is not None:
            store = getattr(supervisor, "store", store)
            logs = getattr(supervisor, "logs", logs)
        assert store is not None and logs is not None, "a store and a log sink"
        self.store, self.logs = store, logs
        self._targets: Targets | None = None
        wanted = config.local_mode or _truthy(store.get_config(key="localMode"))
        if wanted:
            with contextlib.suppress(LocalModeRefused):
                self.set(enabled=True, source="config.json localMode" if config.local_mode
                         else "SUPERVISOR_LOCAL_MODE")
        if supervisor is not None:
            supervisor.targets.admit_cloud = self.admit_cloud_target  # type: ignore[attr-defined]
            self.start(supervisor)

    @property
    def supervisor(self) -> Targets:
        if self._targets is None:
            raise RuntimeError("LocalMode.start(targets) was not called")
        return self._targets

    def start(self, targets: Targets) -> None:
        """Take the supervisor's targets; a local target left behind while the supervisor was
        down (local mode since disabled) is replaced by the kept cloud target."""
        self._targets = targets
        stored = self.store.load_target()
        if not self.enabled and stored is not None and stored.source == TargetSource.LOCAL:
            self._return_to_cloud()

    def set(self, *, enabled: bool, source: str, remember: bool = False) -> None:
        """Enter or leave local mode (`remember`: the config variable's choice, kept in the
        store across restarts). Raises LocalModeRefused on a production device."""
        logs = self.logs
        if enabled and self.config.is_production:
            self.refusal = PRODUCTION_REFUSAL
            logs.system(f"Local mode requested by {source} but refused: {PRODUCTION_REFUSAL}",
                        error=True)
            raise LocalModeRefused(PRODUCTION_REFUSAL)
        self.refusal = ""
        if remember:
            self.store.set_config(key="localMode",
                                             value="true" if enabled else "false")
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if enabled:
            logs.system(f"Local mode enabled (by {source}): the cloud target is ignored until"
                        " it is disabled")
        else:
            logs.system(f"Local mode disabled (by {source}): returning to the cloud target")
            if self._targets is not None:
                self._return_to_cloud()

    def admit_cloud_target(self, target: TargetState) -> bool:
        """The supervisor's gate for cloud targets: kept aside while in local mode."""
        wanted = requested_by(target=target)
        if wanted is not None and wanted != self.enabled:
            with contextlib.suppress(LocalModeRefused):
                self.set(enabled=wanted, source="SUPERVISOR_LOCAL_MODE", remember=True)
        if not self.enabled:
            return True
        self.store.set_config(key="cloudTarget", value=json.dumps(target.to_wire()))
        return False

    def set_local_target(self, *, data: object) -> None:
        """Adopt a balena CLI v2 local target. Raises InvalidInput (nothing changes)."""
        target = formats.parse_v2_local(data=data, device_uuid=self.supervisor.device.uuid)
        store = self.store
        before = store.load_target()
        if before is not None and before.source != "local" and not store.get_config(
                key="cloudTarget"):
            store.set_config(key="cloudTarget", value=json.dumps(before.document))
        self.supervisor.set_target(target=target, source=TargetSource.LOCAL)

    def local_target(self) -> dict[str, object]:
        """The current target in the v2 local format (what `balena push` reads first)."""
        target = self.supervisor.target
        if target is None or self.store.load_target() is None:
            target = TargetState(device_uuid=self.supervisor.device.uuid,
                                 device=DeviceTarget(name=self.supervisor.device.device_name))
        return formats.target_to_v2_local(target=target)

    def _return_to_cloud(self) -> None:
        """Replace the local target by the kept cloud target (or by no apps at all)."""
        raw = self.store.get_config(key="cloudTarget")
        empty = TargetState(device_uuid=self.supervisor.device.uuid,
                            device=DeviceTarget(name=self.supervisor.device.device_name))
        target = empty
        if raw:
            try:
                target = formats.parse_v3(data=json.loads(raw),
                                          device_uuid=self.supervisor.device.uuid)
            except (InvalidInput, ValueError):
                target = empty
        self.supervisor.set_target(target=target, source=TargetSource.CLOUD_KEPT if raw
                                   else TargetSource.LOCAL_EXIT)
        self.store.set_config(key="cloudTarget", value="")
