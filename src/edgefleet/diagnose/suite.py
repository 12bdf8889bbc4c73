"""The full check run: host checks plus the checks that need config.json (DNS, API, supervisor)."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from edgefleet.diagnose import netchecks
from edgefleet.diagnose.checks import CheckResult, run_checks
from edgefleet.diagnose.clock import check_clock_skew
from edgefleet.diagnose.engine_checks import check_container_engine, check_service_restarts
from edgefleet.diagnose.host import Host
from edgefleet.model.config import DeviceConfig
from edgefleet.model.errors import InvalidInput


def check_config(*, config: DeviceConfig | None, refused: InvalidInput | None = None
                 ) -> CheckResult:
    """config.json as the supervisor reads it: a refused file, or optional fields whose bad
    value the supervisor ignores (using the default), fail, each field named."""
    fix = "fix it with `edgefleet config set FIELD VALUE` (or `config unset FIELD`)"
    if refused is not None:
        return CheckResult("check_config", False, "config.json is refused, the supervisor"
                           f" cannot start: {'; '.join(map(str, refused.problems))}; {fix}")
    if config is None:
        return CheckResult("check_config", True, "not applicable: no config.json")
    if config.ignored:
        return CheckResult("check_config", False, "config.json: " + "; ".join(
            map(str, config.ignored)) + f"; the device runs with the default meanwhile; {fix}")
    notes = "".join(f"; {p}" for p in config.adjusted)
    return CheckResult("check_config", True, f"config.json is valid{notes}")


def _registry_credentials(config: DeviceConfig) -> tuple[str, str] | None:
    """balena's device login to its registry: `d_<uuid>` with the device API key."""
    if config.uuid and config.device_api_key:
        return f"d_{config.uuid}", config.device_api_key
    return None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def run_device_checks(*, host: Host, config: DeviceConfig | None,
                      engine_socket: str = "/var/run/docker.sock",
                      data_dir: Path = Path("/var/lib/edgefleet"),
                      config_refused: InvalidInput | None = None) -> dict[str, Any]:
    """Every check that can run; the network ones run concurrently so a full run stays short.
    With a config.json (`config`, or `config_refused` when it does not validate) the run
    includes check_config."""
    report = run_checks(host=host)
    if config is not None or config_refused is not None:
        report["checks"].append(asdict(check_config(config=config, refused=config_refused)))
    if host.run_commands:  # a live host: its engine and services
        report["checks"].append(asdict(check_container_engine(
            host=host, socket_path=engine_socket, record=data_dir / "engine-starts.jsonl")))
        report["checks"].append(asdict(check_service_restarts(socket_path=engine_socket)))
    if config is None:
        return report
    api_host = urlparse(config.api_endpoint or "").hostname
    if api_host and _is_ip(api_host):
        api_host = None  # nothing to resolve
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [
            pool.submit(netchecks.check_supervisor, port=config.listen_port),
            pool.submit(netchecks.check_networking, api_endpoint=config.api_endpoint,
                        root_ca_pem=config.root_ca,
                        registry_endpoint=config.registry_endpoint, host=host,
                        registry_credentials=_registry_credentials(config)),
        ]
        if api_host:
            futures.append(pool.submit(netchecks.check_dns, host=host, api_host=api_host,
                                       dns_servers=config.dns_server_list))
        results: list[CheckResult] = [f.result() for f in futures]
    if not api_host:
        results.append(CheckResult("check_dns", True, "not applicable: no API host name to"
                                   " resolve (unmanaged, or an IP address)"))
    report["checks"].extend(asdict(r) for r in results)
    if config.api_endpoint:
        _timesync_fallback(report, api_endpoint=config.api_endpoint)
    return report


def _timesync_fallback(report: dict[str, Any], *, api_endpoint: str) -> None:
    """Without timedatectl, judge the clock against the API server's Date header."""
    for i, check in enumerate(report["checks"]):
        if check["name"] == "check_timesync" and check["status"].startswith("not applicable"):
            report["checks"][i] = asdict(check_clock_skew(api_endpoint=api_endpoint))
