"""Facts about the device that target resolution needs (what gets injected into containers)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DeviceContext(BaseModel):
    """The device as seen by `model.resolve`: identity, versions, where lock dirs live."""

    model_config = ConfigDict(frozen=True)

    uuid: str
    device_type: str = "generic-amd64"
    arch: str = "amd64"
    device_name: str = ""
    os_version: str = ""
    supervisor_version: str = ""
    lock_root: str = "/tmp/edgefleet/services"
    """Host dir; `<lock_root>/<appId>/<serviceName>` is bound at /tmp/balena in each container."""
    scope: str = "default"
    """Value of the `io.edgefleet.scope` label this supervisor puts on and filters by."""
    supervisor_api_port: int = 48484
    supervisor_api_host_for_bridge: str = ""
    """Gateway of the supervisor0 bridge, for services not on host networking (issue 4)."""
    supervisor_api_keys: dict[str, str] = {}
    """Per-app supervisor API keys, by app uuid (for services with the supervisor-api label)."""
    host_features: frozenset[str] = frozenset(
        {"supervisor-api", "balena-api", "balena-socket", "dbus", "sysfs", "procfs",
         "kernel-modules", "firmware", "journal-logs"}
    )
    engine_socket: str = "/var/run/docker.sock"
    device_api_key: str = ""
    """The device's own API key: `BALENA_API_KEY` of services with the balena-api feature (it
    can reach only this device)."""
    api_endpoint: str = ""
    """The fleet server's URL: `BALENA_API_URL`."""
    l4t_version: str = ""
    """The NVIDIA L4T version, for `requires.sw.l4t` contracts ("" when not a Jetson)."""
    check_contracts: bool = True
    """False when a target is only checked for validity (at the door, not for this device)."""
