"""The supervisor0-style bridge: created once (also when two supervisors race), then reused."""

from __future__ import annotations

import asyncio

import pytest

from edgefleet.engine.bridge import ensure_bridge
from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.errors import EngineError
from tests.support import images

pytestmark = pytest.mark.engine


async def test_created_once_and_reused(engine_sock: str, unique: str) -> None:
    name = f"efb{unique[:8]}"
    third = int(unique[:4], 16) % 200 + 20
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
