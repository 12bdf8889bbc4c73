"""Local mode (compat §9): the device ignores the cloud target and takes its target from
`POST /v2/local/target-state` (balena CLI's `balena push <ip>`). Refused on production devices;
leaving it removes the local app and returns to the cloud target."""

from __future__ import annotations

import contextlib
import json

from edgefleet.device.supervisor import Supervisor
from edgefleet.model import formats
from edgefleet.model.config import DeviceConfig
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


class LocalMode:
    """Whether the device is in local mode, and the cloud target kept aside meanwhile."""

    def __init__(self, *, supervisor: Supervisor, config: DeviceConfig) -> None:
        self.supervisor = supervisor
        self.config = config
        self.refusal = ""
        store = supervisor.store
        wanted = config.local_mode or _truthy(store.get_config(key="localMode"))
        self.enabled = False
        if wanted:
            with contextlib.suppress(LocalModeRefused):
                self.set(enabled=True, source="config.json localMode" if config.local_mode
                         else "SUPERVISOR_LOCAL_MODE")
        elif (stored := store.load_target()) is not None and stored.source == "local":
            self._return_to_cloud()  # local mode was left while the supervisor was down
        supervisor.cloud_gate = self.admit_cloud_target

    def set(self, *, enabled: bool, source: str, remember: bool = False) -> None:
        """Enter or leave local mode (`remember`: the config variable's choice, kept in the
        store across restarts). Raises LocalModeRefused on a production device."""
        logs = self.supervisor.logs
        if enabled and self.config.is_production:
            self.refusal = PRODUCTION_REFUSAL
            logs.system(f"Local mode requested by {source} but refused: {PRODUCTION_REFUSAL}",
                        error=True)
            raise LocalModeRefused(PRODUCTION_REFUSAL)
        self.refusal = ""
        if remember:
            self.supervisor.store.set_config(key="localMode",
                                             value="true" if enabled else "false")
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if enabled:
            logs.system(f"Local mode enabled (by {source}): the cloud target is ignored until"
                        " it is disabled")
        else:
            logs.system(f"Local mode disabled (by {source}): returning to the cloud target")
            self._return_to_cloud()

    def admit_cloud_target(self, target: TargetState) -> bool:
        """The supervisor's gate for cloud targets: kept aside while in local mode."""
        wanted = requested_by(target=target)
        if wanted is not None and wanted != self.enabled:
            with contextlib.suppress(LocalModeRefused):
                self.set(enabled=wanted, source="SUPERVISOR_LOCAL_MODE", remember=True)
        if not self.enabled:
            return True
        self.supervisor.store.set_config(key="cloudTarget", value=json.dumps(target.to_wire()))
        return False

    def set_local_target(self, *, data: object) -> None:
        """Adopt a balena CLI v2 local target. Raises InvalidInput (nothing changes)."""
        target = formats.parse_v2_local(data=data, device_uuid=self.supervisor.device.uuid)
        store = self.supervisor.store
        before = store.load_target()
        if before is not None and before.source != "local" and not store.get_config(
                key="cloudTarget"):
            store.set_config(key="cloudTarget", value=json.dumps(before.document))
        self.supervisor.set_target(target=target, source="local")

    def local_target(self) -> dict[str, object]:
        """The current target in the v2 local format (what `balena push` reads first)."""
        target = self.supervisor.target
        if target is None or self.supervisor.store.load_target() is None:
            target = TargetState(device_uuid=self.supervisor.device.uuid,
                                 device=DeviceTarget(name=self.supervisor.device.device_name))
        return formats.target_to_v2_local(target=target)

    def _return_to_cloud(self) -> None:
        """Replace the local target by the kept cloud target (or by no apps at all)."""
        raw = self.supervisor.store.get_config(key="cloudTarget")
        empty = TargetState(device_uuid=self.supervisor.device.uuid,
                            device=DeviceTarget(name=self.supervisor.device.device_name))
        target = empty
        if raw:
            try:
                target = formats.parse_v3(data=json.loads(raw),
                                          device_uuid=self.supervisor.device.uuid)
            except (InvalidInput, ValueError):
                target = empty
        self.supervisor.set_target(target=target, source="cloud-kept" if raw else "local-exit")
        self.supervisor.store.set_config(key="cloudTarget", value="")
