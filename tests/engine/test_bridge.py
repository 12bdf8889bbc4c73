"""The supervisor0-style bridge: created once (also when two supervisors race), then reused."""

from __future__ import annotations

import asyncio
import random

import pytest

from edgefleet.engine.bridge import ensure_bridge
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.errors import EngineError
from tests.support import images

pytestmark = pytest.mark.engine


def free_third_octet() -> int:
    """A 10.117.N.0/25 no network on the shared engine uses (a leftover of a crashed run
    would make the create fail with "Pool overlaps")."""
    with images.engine_client() as c:
        used = {cfg.get("Subnet", "") for net in c.get("/networks").json()
                for cfg in (net.get("IPAM") or {}).get("Config") or []}
    free = [n for n in range(20, 220) if f"10.117.{n}.0/25" not in used]
    assert free, "every 10.117.N.0/25 is taken on the shared engine"
    return random.choice(free)


async def test_created_once_and_reused(engine_sock: str, unique: str) -> None:
    name = f"efb{unique[:8]}"
    third = free_third_octet()
    subnet = f"10.117.{third}.0/25"
    engines = [DockerEngine(socket=engine_sock, scope="bridge-test") for _ in range(2)]
    try:
        gateways = await asyncio.gather(*(ensure_bridge(engine=e, name=name, subnet=subnet)
                                          for e in engines))
        assert gateways == [f"10.117.{third}.1"] * 2
        assert await ensure_bridge(engine=engines[0], name=name, subnet=subnet) == gateways[0]
        with images.engine_client() as c:
            info = c.get(f"/networks/{name}").json()
        assert info["Options"]["com.docker.network.bridge.name"] == name
        with pytest.raises(EngineError, match="bad subnet"):
            await ensure_bridge(engine=engines[0], name=name, subnet="10.1.2.3/99")
    finally:
        for e in engines:
            await e.close()
        with images.engine_client() as c:
            c.delete(f"/networks/{name}")
