"""A balena example app runs unchanged (issue 12): balena-io-examples/device-tags' compose
shape (the balena-api feature label, a published port) plus an env_file, a feature label set
to a false value and an `x-*` field, read through the server's push reading path
(`load_project`) and run by a real supervisor on the real engine."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.device.targets import TargetSource
from edgefleet.model import formats
from edgefleet.model.errors import InvalidInput
from edgefleet.server.project import load_project
from tests.device.conftest import Device
from tests.support import images

pytestmark = pytest.mark.engine

COMPOSE = """version: '2'
x-common: &common
  restart: always
services:
  device_tags_node:
    <<: *common
    image: example/device-tags
    command: ["sh", "-c", "httpd -f -p {port}"]
    env_file: app.env
    labels:
      io.balena.features.balena-api: 1
      io.balena.features.dbus: 'false'
    ports:
      - "{port}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


async def test_device_tags_example_runs_with_the_device_key_and_its_port(
    device: Device, tmp_path: Path, test_images: dict[str, Any]
) -> None:
    port = free_port()
    project = tmp_path / "project"
    project.mkdir()
    (project / "docker-compose.yml").write_text(COMPOSE.format(port=port))
    (project / "app.env").write_text("# settings\nGREETING=hello\nUDEV=on\n")
    loaded = load_project(root=project)
    release = formats.release_from_compose(
        compose_yaml=loaded.composition,
        images={"device_tags_node": test_images["web"].ref})
    sup = device.supervisor
    sup.targets.device = sup.device.model_copy(update={"device_api_key": "device-own-key",
                                                       "api_endpoint": "http://fleet.example"})
    sup.set_target(target=device.target(release, commit=f"dt{device.app_uuid[-6:]}"),
                   source=TargetSource.DIRECT)
    await device.converge()
    ctr = (await device.containers())["device_tags_node"]
    with images.engine_client() as c:
        info = c.get(f"/containers/{ctr.id}/json").json()
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["BALENA_API_KEY"] == env["RESIN_API_KEY"] == "device-own-key"
    assert env["BALENA_API_URL"] == "http://fleet.example"
    assert env["GREETING"] == "hello" and env["UDEV"] == "on"  # env_file, YAML 1.2
    assert not any(m["Source"] == "/run/dbus" for m in info["Mounts"])  # 'false' is off
    assert info["HostConfig"]["PortBindings"] == {f"{port}/tcp": [{"HostIp": "",
                                                                    "HostPort": str(port)}]}
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(timeout=2) as client:
        while True:  # the container-only port answers on the same host port
            try:
                r = await client.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "nothing answers on the container's port"
                await asyncio.sleep(0.3)
    assert r.status_code in (200, 403, 404)


async def test_a_release_whose_contract_this_device_does_not_meet_is_rejected(
    device: Device, test_images: dict[str, Any]
) -> None:
    compose = ("services:\n  main:\n    image: x\n    labels:\n"
               "      io.balena.features.requires.hw.device-type: jetson-nano\n"
               "  opt:\n    image: x\n    labels:\n"
               "      io.balena.features.requires.sw.l4t: '>=32'\n"
               "      io.balena.features.optional: 'true'\n")
    imgs = {"main": test_images["sleeper"].ref, "opt": test_images["sleeper"].ref}
    with pytest.raises(InvalidInput, match=r"contract not met: requires hw\.device-type"):
        device.supervisor.set_target(target=device.compose_target(compose, imgs),
                                     source=TargetSource.DIRECT)
    [app] = device.store.apps()
    assert app.update_status == "rejected" and "jetson-nano" in app.status_message
    # without the unmet required service, the optional one is skipped and the rest runs
    ok = compose.replace("jetson-nano", device.supervisor.device.device_type)
    device.supervisor.set_target(target=device.compose_target(ok, imgs, commit="c2"),
                                 source=TargetSource.DIRECT)
    await device.converge()
    assert set(await device.containers()) == {"main"}
