"""Hands edgefleet.diagnose to the supervisor API (device may not import diagnose itself):
`GET /v2/diagnostics/checks` and `/v2/diagnostics/report` call these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.model.config import DeviceConfig


@dataclass(frozen=True)
class DiagnoseForApi:
    """The health checks and the report of this host, for the supervisor API."""

    config: DeviceConfig
    config_path: Path
    engine_socket: str
    data_dir: Path

    def checks(self) -> dict[str, Any]:
        from edgefleet.diagnose.host import Host
        from edgefleet.diagnose.suite import run_device_checks

        return run_device_checks(host=Host(), config=self.config,
                                 engine_socket=self.engine_socket, data_dir=self.data_dir)

    def report(self, *, secrets: list[str]) -> str:
        from edgefleet.diagnose.report import build_report, default_commands

        return build_report(commands=default_commands(supervisor_port=self.config.listen_port),
                            config_path=self.config_path, extra_secrets=secrets)
