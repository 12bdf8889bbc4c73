"""What the API's routes work with: the supervisor, config.json, local mode, keys, and the
pieces other parts of edgefleet plug in (cloud link callback, diagnostics, host commands)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgefleet.device.api_keys import ApiKeys
from edgefleet.device.local_mode import LocalMode
from edgefleet.device.supervisor import Supervisor
from edgefleet.model.config import DeviceConfig
from edgefleet.model.timeutil import now_ms

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


@dataclass
class ApiContext:
    """Everything the routes need; one per supervisor."""

    supervisor: Supervisor
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

    @property
    def keys(self) -> ApiKeys:
        return self.supervisor.api_keys

    @property
    def auth_required(self) -> bool:
        """Keys are checked only on a managed device that is not in local mode (compat §5)."""
        return self.config.is_managed and not self.local.enabled

    @property
    def version(self) -> str:
        from edgefleet import __version__

        return f"{BALENA_API_VERSION}+edgefleet.{__version__}"
