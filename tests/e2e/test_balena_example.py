"""End to end (issue 12): a balena example app, pushed unchanged in shape, runs on a device.

balena-io-examples/device-tags' compose file (a service built from the project with the
`io.balena.features.balena-api` label and a published port), with an `env_file`, a feature
label set to a false value and an `x-*` anchor, is pushed to a real `edgefleet server run`
and runs on a provisioned device (private dockerd, real supervisor process). The service gets
the device's own API key, which reads this device's state and nothing else.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.devices import E2EDevice, running_device, wait_for
from tests.e2e.test_fleet import DOCKERFILE, Fleet, fleet_server  # noqa: F401 (fixture)
from tests.support.fleet import free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]

COMPOSE = """version: '2'
x-common: &common
  restart: always
services:
  device_tags_node:
    <<: *common
    build: ./device_tags_node
    env_file: device.env
    labels:
      io.balena.features.balena-api: 1
      io.balena.features.dbus: 'off'
    ports:
      - "{port}"
"""


@pytest.fixture
def device(tmp_path: Path) -> Iterator[E2EDevice]:
    with running_device("tags", tmp_path / "dev") as dev:
        yield dev


def test_device_tags_example_is_pushed_and_runs_with_the_device_key(
    fleet_server: Fleet, device: E2EDevice, tmp_path: Path  # noqa: F811
) -> None:
    fleet = fleet_server
    fleet.cli("fleet", "create", "tags", "--type", "generic-amd64")
    out = tmp_path / "provisioning.json"
    fleet.cli("device", "config", "tags", "-o", str(out), "--poll-interval", "10000")
    device.provision(json.loads(out.read_text()))
    device.start()
    project = tmp_path / "project"
    (project / "device_tags_node").mkdir(parents=True)
    cmd = ["sh", "-c", 'trap exit TERM; echo "tags for $DEVICE_NAME"; while true; do sleep 1; done']
    (project / "device_tags_node" / "Dockerfile").write_text(DOCKERFILE.format(
        cmd=json.dumps(cmd)))
    shutil.copy2("/bin/busybox", project / "device_tags_node" / "busybox")
    port = free_port()
    (project / "docker-compose.yml").write_text(COMPOSE.format(port=port))
    (project / "device.env").write_text("DEVICE_NAME=kitchen\nUDEV=on\n")
    try:
        wait_for("the device to register", lambda: device.uuid, timeout=60)
        commit = fleet.push("tags", project)
        wait_for("the release to run", lambda: device.running_commits() ==
                 {"device_tags_node": commit}, timeout=120)
        info = device.containers()["device_tags_node"]
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        key = device.config()["deviceApiKey"]
        assert env["BALENA_API_KEY"] == env["RESIN_API_KEY"] == key
        assert env["BALENA_API_URL"] == fleet.url
        assert env["DEVICE_NAME"] == "kitchen" and env["UDEV"] == "on"
        assert not any(m["Source"] == "/run/dbus" for m in info["Mounts"])
        assert info["HostConfig"]["PortBindings"] == {  # the container-only port: same port
            f"{port}/tcp": [{"HostIp": "", "HostPort": str(port)}]}
        headers = {"Authorization": f"Bearer {key}"}
        own = httpx.get(f"{fleet.url}/device/v3/{device.uuid}/state", headers=headers)
        assert own.status_code == 200
        other = httpx.get(f"{fleet.url}/api/v1/fleets", headers=headers)
        assert other.status_code in (401, 403), "the device key is not a user's key"
    finally:
        print(device.log_tail())
