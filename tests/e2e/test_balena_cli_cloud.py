"""The real balena CLI (npm balena-cli 25.2.6) against an edgefleet fleet server, as an
openBalena user would drive it: token login, a fleet, `balena push <fleet>` of a two-service
project built by the server (and `balena deploy` of one built by the CLI), a real edgefleet
device (private dockerd + supervisor) running it, variables at fleet and device+service
level, logs, and another user's fleet refused.

The requests the CLI sent are recorded (EDGEFLEET_BALENA_RECORD); with
EDGEFLEET_UPDATE_BALENA_RECORDING=1 they replace tests/compat/balena-cli/requests.jsonl,
which tests/server/balena/test_recorded_requests.py replays quickly."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.balena_cli import Balena, Server, balena_for, balena_server, with_ssh
from tests.e2e.devices import E2EDevice, running_device, wait_for
from tests.support import images

pytestmark = [pytest.mark.engine, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "tests/compat/balena-cli/requests.jsonl"


DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV GREETING=hello
CMD {cmd}
"""
COMPOSE = "version: '2.1'\nservices:\n  main:\n    build: ./main\n  worker:\n    build: ./worker\n"


def write_project(root: Path, *, version: str = "v1") -> Path:
    """Two services built FROM scratch with the host's static busybox; both stop at once on
    SIGTERM (so variable changes restart them quickly)."""
    loops = {"main": 'while true; do echo "main says $GREETING"; sleep 1; done',
             "worker": f"echo worker {version} started; while true; do sleep 1; done"}
    for service, loop in loops.items():
        (root / service).mkdir(parents=True)
        cmd = ["sh", "-c", f"trap 'exit 0' TERM; {loop} & wait"]
        (root / service / "Dockerfile").write_text(DOCKERFILE.format(cmd=json.dumps(cmd)))
        shutil.copy2("/bin/busybox", root / service / "busybox")
    (root / "docker-compose.yml").write_text(COMPOSE)
    return root


@pytest.fixture
def server(tmp_path: Path, registry: str) -> Iterator[Server]:
    with balena_server(tmp_path, registry) as srv:
        yield srv


@pytest.fixture
def device(tmp_path: Path) -> Iterator[E2EDevice]:
    reboot = ("--reboot-command", f"touch {tmp_path / 'rebooted'}")
    with running_device("cli-dev", tmp_path / "dev", args=reboot) as dev:
        yield dev


def env_of(dev: E2EDevice, service: str) -> list[str]:
    return list(dev.containers()[service]["Config"]["Env"])


def started_at(dev: E2EDevice) -> dict[str, str]:
    return {name: c["State"]["StartedAt"] for name, c in dev.containers().items()
            if c["State"]["Running"]}


def device_actions(alice: Balena, dev: E2EDevice, uuid: str, rebooted: Path) -> None:
    """`balena device restart|reboot|identify`: balena's supervisor relay, through the
    device's tunnel to its supervisor API."""
    before = started_at(dev)
    out = alice("device", "restart", uuid)
    assert f"Restarting services on device {uuid}" in out, out
    wait_for("both containers to restart", lambda: (now := started_at(dev)).keys()
             == before.keys() and all(now[s] != before[s] for s in before), timeout=60)
    alice("device", "identify", uuid)
    assert not rebooted.exists()
    alice("device", "reboot", uuid)
    wait_for("the device's reboot command to run", rebooted.exists, timeout=20)


def device_ssh(server: Server, alice: Balena, token: str, uuid: str) -> None:
    """`balena device ssh <uuid>`: the CLI runs `ssh -p PORT <user>@ssh.<proxy URL> host
    <uuid>`, answered by the server's SSH front door with the user's registered key (see
    `with_ssh`)."""
    out = with_ssh(server, alice, token)("device", "ssh", uuid, "-p", str(server.ssh_port),
                                         input="echo via-balena-ssh $((6*7)); exit 0\n",
                                         timeout=60)
    assert "via-balena-ssh 42" in out, out


def test_balena_cli_drives_the_fleet_server(server: Server, device: E2EDevice,
                                            tmp_path: Path, unique: str) -> None:
    alice_name, bob_name = f"alice{unique}".lower()[:30], f"bob{unique}".lower()[:30]
    alice = balena_for(server, tmp_path / "alice")
    bob = balena_for(server, tmp_path / "bob")
    fleet = f"{alice_name}/cloud"
    try:
        token = server.user(alice_name)
        out = alice("login", "--token", token)
        assert f"Successfully logged in as: {alice_name}" in out, out
        assert re.search(rf"USERNAME:\s+{alice_name}", alice("whoami"))

        out = alice("fleet", "create", "cloud", "--type", "generic-amd64")
        assert f'Fleet created: slug "{fleet}", device type "generic-amd64"' in out, out
        listing = alice("fleet", "list")
        assert re.search(rf"\b{fleet}\s+generic-amd64\s+0\s+0", listing), listing

        conf = tmp_path / "config.json"
        alice("config", "generate", "--fleet", fleet, "--version", "2.80.3", "--network",
              "ethernet", "--appUpdatePollInterval", "10", "--output", str(conf))
        config = json.loads(conf.read_text())
        assert config["apiEndpoint"] == server.url and config["provisioningApiKey"]
        assert config["appUpdatePollInterval"] == 600_000
        config["appUpdatePollInterval"] = 10_000  # the test's speed-up (the minimum)
        device.provision(config)
        device.start()
        wait_for("the device to register", lambda: device.uuid, timeout=60)
        uuid = device.uuid

        project = write_project(tmp_path / "project")
        out = alice("push", fleet, "--source", str(project))
        assert "[main] Successfully built" in out and "[worker] Successfully built" in out, out
        commit = re.search(r"Release ([0-9a-f]{32}) built successfully", out)
        assert commit, out
        c1 = commit.group(1)
        wait_for("the device to run the release",
                 lambda: device.running_commits() == {"main": c1, "worker": c1}, timeout=120)

        def listed() -> str | None:
            text = alice("device", "list")
            return text if re.search(rf"{uuid[:7]}\s+.*\s+{fleet}\s+Online\s+true", text) \
                else None
        wait_for("`balena device list` to show the device Online", listed, timeout=60)
        wait_for("`balena device` to show the running release",
                 lambda: re.search(rf"COMMIT:\s+{c1}", alice("device", uuid)), timeout=60)
        device_actions(alice, device, uuid, tmp_path / "rebooted")
        device_ssh(server, alice, token, uuid)

        alice("env", "set", "GREETING", "fleetwide", "--fleet", fleet)
        wait_for("the fleet variable to reach both services",
                 lambda: "GREETING=fleetwide" in env_of(device, "main")
                 and "GREETING=fleetwide" in env_of(device, "worker"), timeout=90)
        alice("env", "set", "GREETING", "just-main", "--device", uuid, "--service", "main")
        wait_for("the device+service variable to reach main only",
                 lambda: "GREETING=just-main" in env_of(device, "main")
                 and device.containers()["main"]["State"]["Running"], timeout=90)
        assert "GREETING=fleetwide" in env_of(device, "worker")
        envs = alice("env", "list", "--device", uuid)
        assert re.search(r"GREETING\s+just-main\s+\S+\s+" + uuid + r"\s+main", envs), envs
        assert re.search(r"GREETING\s+fleetwide\s+\S+\s+\*\s+\*", envs), envs

        def history() -> str | None:
            text = alice("device", "logs", uuid)
            return text if "main says just-main" in text else None
        logs = wait_for("`balena device logs` to show main's new output", history, timeout=60)
        assert re.search(r"\[main\]\s+main says just-main", logs), logs[-2000:]
        assert "worker v1 started" in logs
        tail = alice.stream("device", "logs", uuid, "--tail", "--max-retry", "0",
                            until=["main says just-main"])
        assert "main says just-main" in tail, tail

        deployed = write_project(tmp_path / f"dep{unique}", version="v2")
        out = alice("deploy", fleet, "--source", str(deployed), "--build", "--docker",
                    images.DOCKER_SOCK)
        release = re.search(r"Deploy succeeded!\s+\S*\s*Release: ([0-9a-f]{32})", out)
        assert release, out
        c2 = release.group(1)
        wait_for("the device to run the deployed release",
                 lambda: device.running_commits() == {"main": c2, "worker": c2}, timeout=120)
        assert "GREETING=just-main" in env_of(device, "main"), "variables still apply"

        out = alice("device", "register", fleet)
        spare = re.search(rf"Registering to {fleet}: ([0-9a-f]{{32}})", out)
        assert spare, out
        alice("device", "rename", uuid, "kitchen")
        listing = alice("device", "list")
        assert re.search(rf"{uuid[:7]}\s+kitchen\s+generic-amd64\s+{fleet}", listing), listing
        assert spare.group(1)[:7] in listing
        alice("device", "rm", spare.group(1), "--yes")
        devices = server.api("/devices?fleet=cloud", token=token)
        assert [d["uuid"] for d in devices] == [uuid], devices
        alice("device", "pin", uuid, c1)
        alice("fleet", "pin", fleet, c1)
        assert server.api(f"/devices/{uuid}", token=token)["pinned_release"] == c1
        assert server.api("/fleets/cloud", token=token)["target_release"] == c1
        var_id = re.search(r"(\d+)\s+GREETING\s+fleetwide", envs)
        assert var_id, envs
        alice("env", "rm", var_id.group(1), "--yes")
        assert server.api("/variables?fleet=cloud", token=token) == []

        assert "Successfully logged in" in bob("login", "--token", server.user(bob_name))
        refused = bob("fleet", "rm", fleet, "--yes", ok=False)
        assert f"Application not found: {fleet}" in refused, refused
        out = alice("fleet", "rename", fleet, "cloud2")
        assert "Fleet renamed" in out and f"slug: {alice_name}/cloud2" in out, out
    except BaseException:
        print(f"--- supervisor log ---\n{device.log_tail(60)}")
        print(f"--- server log ---\n{server.log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for service in ("main", "worker"):  # what `balena deploy` built on the engine
            images.remove_local(f"dep{unique}_{service}:latest")
        if os.environ.get("EDGEFLEET_UPDATE_BALENA_RECORDING") and server.record.exists():
            RECORDING.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(server.record, RECORDING)
