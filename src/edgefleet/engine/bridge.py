"""The `supervisor0` bridge (compat §5): services that are not on host networking reach the
supervisor API at this bridge's gateway address. Created once, shared, never removed."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.errors import EngineError, EngineUnavailable, NotFound

DEFAULT_NAME = "supervisor0"
DEFAULT_SUBNET = "10.114.104.0/25"


def _gateway(info: dict[str, Any]) -> str | None:
    for pool in (info.get("IPAM") or {}).get("Config") or []:
        if pool.get("Gateway"):
            return str(pool["Gateway"]).split("/")[0]
        if pool.get("Subnet"):
            return str(next(ipaddress.ip_network(pool["Subnet"]).hosts()))
    return None


async def ensure_bridge(*, engine: DockerEngine, name: str = DEFAULT_NAME,
                        subnet: str = DEFAULT_SUBNET) -> str:
    """Create the bridge network (Linux bridge of the same name) if missing; its gateway."""
    try:
        net = ipaddress.ip_network(subnet)
    except ValueError as exc:
        raise EngineError(f"network {name}", f"bad subnet {subnet!r}: {exc}") from None
    gateway = str(next(net.hosts()))
    body = {"Name": name, "Driver": "bridge", "CheckDuplicate": True,
            "Options": {"com.docker.network.bridge.name": name},
            "IPAM": {"Driver": "default", "Config": [{"Subnet": str(net), "Gateway": gateway}]},
            "Labels": {"io.edgefleet.supervisor-bridge": "true"}}
    obj = f"network {name}"
    info: dict[str, Any] | None = None
    for attempt in range(5):
        try:
            info = await engine.api(obj, f"networks/{name}")
            break
        except NotFound:
            pass
        try:
            await engine.api(obj, "networks/create", "POST", data=body)
            return gateway
        except EngineUnavailable:
            raise
        except EngineError:
            # another supervisor may be creating it right now (409 or "pool overlaps")
            if attempt == 4:
                raise
            await asyncio.sleep(0.2)
    assert info is not None
    found = _gateway(info)
    if found is None:
        raise EngineError(f"network {name}", "exists but has no IPv4 gateway")
    return found
