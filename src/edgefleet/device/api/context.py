"""What the API's routes work with: narrow views of the supervisor (loop, targets, engine
observer, store, logs), config.json, local mode, keys, and the pieces other parts of edgefleet
plug in (cloud link callback, diagnostics, host commands)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgefleet.device.api_keys import ApiKeys
from edgefleet.device.engine_port import Engine
from edgefleet.device.intent_queue import IntentQueue, IntentResult
from edgefleet.device.local_mode import LocalMode
from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.device.supervisor import Supervisor
from edgefleet.device.supervisor_state import SupervisorState
from edgefleet.model.config import DeviceConfig
from edgefleet.model.context import DeviceContext
from edgefleet.model.service import DesiredState
from edgefleet.model.target import TargetState
from edgefleet.model.timeutil import now_ms
from edgefleet.plan.intents import Intent

# balena CLI needs a supervisor version >= 7.21.4 for local mode; this is the balena supervisor
# API version whose endpoints and formats this API follows (compat §5), edgefleet's own version
# rides along as semver build metadata.
BALENA_API_VERSION = "17.0.0"


@dataclass(frozen=True)
class HostCommands:
    """Commands `/v1/reboot` and `/v1/shutdown` run on the host (argv, no shell)."""

    reboot: tuple[str, ...] = ("systemctl", "reboot")
    shutdown: tuple[str, ...] = ("systemctl", "poweroff")
    delay_s: float = 1.0
    """Wait before running, so the HTTP response gets out first."""


class Diagnostics(Protocol):
    """Health checks and the diagnostics report (edgefleet.diagnose, wired in by the CLI)."""

    def checks(self) -> dict[str, Any]: ...

    def report(self, *, secrets: list[str]) -> str: ...


class Loop(Protocol):
    """The reconciler as routes see it: its state, wake-ups and intents."""

    state: SupervisorState
    poll_interval_s: float
    force_once: bool
    lock_override: bool
    intents: IntentQueue

    def wake(self) -> None: ...

    async def submit(self, intent: Intent) -> IntentResult: ...

    def may_disturb(self, app_uuid: str) -> bool: ...


class Targets(Protocol):
    """The current target as routes see it."""

    @property
    def desired(self) -> DesiredState: ...

    @property
    def device(self) -> DeviceContext: ...

    @property
    def api_keys(self) -> ApiKeys: ...

    @property
    def target(self) -> TargetState | None: ...

    def reresolve(self) -> None: ...


class Observer(Protocol):
    """Read access to the engine (intents change it, through the plan)."""

    @property
    def engine(self) -> Engine: ...


@dataclass
class ApiContext:
    """Everything the routes need, each as the narrow view its routes use: `loop` (state,
    wake-ups, intents), `targets`, `observer` (the engine, to read), `store`, `logs`. Built
    from one supervisor, which routes never see whole."""

    loop: Loop
    targets: Targets
    observer: Observer
    store: Store
    logs: LogSink
    config: DeviceConfig
    local: LocalMode
    host: HostCommands = field(default_factory=HostCommands)
    on_update_requested: Callable[[], None] | None = None
    """Called by `POST /v1/update` after waking the supervisor (the cloud link fetches)."""
    diagnostics: Diagnostics | None = None
    journalctl: str = "journalctl"
    journal_dirs: tuple[str, ...] = ("/run/log/journal", "/var/log/journal")
    started_ms: int = field(default_factory=now_ms)
    api_port: int = 48484
    os_version: str = ""
    ip_addresses: tuple[str, ...] = ()

    @classmethod
    def of(cls, supervisor: Supervisor, **kw: Any) -> ApiContext:
        """The context of one supervisor: each view is the supervisor, narrowed."""
        return cls(loop=supervisor, targets=supervisor, observer=supervisor,
                   store=supervisor.store, logs=supervisor.logs, **kw)

    @property
    def keys(self) -> ApiKeys:
        return self.targets.api_keys

    @property
    def auth_required(self) -> bool:
        """Keys are checked only on a managed device that is not in local mode (compat §5)."""
        return self.config.is_managed and not self.local.enabled

    @property
    def version(self) -> str:
        from edgefleet import __version__

        return f"{BALENA_API_VERSION}+edgefleet.{__version__}"
