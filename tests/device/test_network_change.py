"""A network whose configuration changed is recreated on the real engine, and the containers
on it come back attached to the new one (planner gap from issue 2)."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.device.targets import TargetSource
from tests.device.conftest import Device
from tests.support import images

pytestmark = pytest.mark.engine


def compose(label: str) -> str:
    return f"""
services:
  web:
    command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
    networks: [backend]
  other:
    command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
networks:
  backend:
    labels: {{tier: "{label}"}}
"""


def network(name: str) -> dict[str, Any]:
    with images.engine_client() as c:
        return dict(c.get(f"/networks/{name}").json())


async def test_changed_network_is_recreated_with_its_containers(
    device: Device, test_images: dict[str, Any]
) -> None:
    imgs = {"web": test_images["sleeper"].ref, "other": test_images["sleeper"].ref}
    device.supervisor.set_target(target=device.compose_target(compose("a"), imgs),
                                 source=TargetSource.DIRECT)
    await device.converge()
    name = f"{device.app_uuid}_backend"
    before = network(name)
    old = await device.containers()
    assert before["Labels"]["tier"] == "a"
    device.supervisor.set_target(target=device.compose_target(compose("b"), imgs, commit="c2",
                                                              release_id=2),
                                                                  source=TargetSource.DIRECT)
    await device.converge()
    after = network(name)
    assert after["Id"] != before["Id"] and after["Labels"]["tier"] == "b"
    now = await device.containers()
    assert now["web"].id != old["web"].id and now["web"].status == "running"
    assert name in now["web"].networks
    assert now["other"].id == old["other"].id, "a service not on it is only renamed"
    assert not any("Failed" in m for m in device.log_messages())
