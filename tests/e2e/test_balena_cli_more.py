"""More of the real balena CLI against a real `edgefleet server run` (see
test_balena_cli_cloud.py for the main tour): `device restart --service` and `fleet restart`
on a real device; `ssh-key list|add|rm|<id>` on edgefleet's own SSH keys (those of
`edgefleet key add`, which the SSH front door accepts); `tag set|rm|list` on fleets, devices
and releases (and `push --release-tag`); `device note`."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.balena_cli import BALENA, Balena, Server, balena_for, balena_server, with_ssh
from tests.e2e.devices import running_device, wait_for
from tests.support import images

pytestmark = [pytest.mark.engine, pytest.mark.slow]
RECORDING = Path(__file__).resolve().parents[1] / "compat/balena-cli/requests-more.jsonl"
"""The requests sent here (refusals left out), replayed by
tests/server/balena/test_recorded_requests.py; rewritten with
EDGEFLEET_UPDATE_BALENA_RECORDING=1."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[Server]:
    with balena_server(tmp_path_factory.mktemp("balena-more"), registry) as srv:
        try:
            yield srv
        finally:
            if os.environ.get("EDGEFLEET_UPDATE_BALENA_RECORDING") and srv.record.exists():
                keep = [line for line in srv.record.read_text().splitlines()
                        if json.loads(line)["status"] < 400 or json.loads(line)["status"] == 409]
                RECORDING.write_text("\n".join(keep) + "\n")


@pytest.fixture(scope="module")
def image(registry: str) -> str:
    """A service image in the local registry: a release of it needs no build."""
    return images.build_and_push("ef-e2e-restarted", "v1", cmd=[
        "sh", "-c", "trap exit TERM; while true; do sleep 1; done"]).ref


def release_of(cli: Balena, fleet: str, image: str, project: Path, *options: str) -> str:
    """`balena push` of a two-service compose file of `image`; the release's commit."""
    project.mkdir()
    (project / "docker-compose.yml").write_text(
        f"version: '2.1'\nservices:\n  main:\n    image: {image}\n"
        f"  worker:\n    image: {image}\n")
    out = cli("push", fleet, "--source", str(project), *options)
    commit = re.search(r"Release ([0-9a-f]{32}) built successfully", out)
    assert commit, out
    return commit.group(1)


def logged_in(server: Server, home: Path, name: str) -> tuple[Balena, str]:
    """A new user (edgefleet's user API) and the balena CLI logged in as them."""
    token = server.user(name)
    cli = balena_for(server, home)
    assert f"Successfully logged in as: {name}" in cli("login", "--token", token)
    return cli, token


def test_device_restart_one_service(server: Server, image: str, tmp_path: Path,
                                    unique: str) -> None:
    """`balena device restart <uuid> --service main` reads the device's image installs and
    asks its supervisor (through the relay and the tunnel) to restart main only; `balena
    fleet restart` restarts every service of the fleet's devices; `balena device ssh <uuid>
    <service>` (see `service_ssh`); `balena device move` to a fleet of a compatible device
    type (not to another architecture's, nor to another user's fleet), after which the
    device runs that fleet's release."""
    name = f"rs{unique}"
    alice, token = logged_in(server, tmp_path / "alice", name)
    fleet = f"{name}/svc"
    alice("fleet", "create", "svc", "--type", "generic-amd64")
    conf = tmp_path / "config.json"
    alice("config", "generate", "--fleet", fleet, "--version", "2.80.3", "--network",
          "ethernet", "--appUpdatePollInterval", "10", "--output", str(conf))
    config = {**json.loads(conf.read_text()), "appUpdatePollInterval": 10_000}
    with running_device("restart-dev", tmp_path / "dev") as dev:
        dev.provision(config)
        dev.start()
        uuid = wait_for("the device to register", lambda: dev.uuid, timeout=60)
        commit = release_of(alice, fleet, image, tmp_path / "project")
        wait_for("the device to run the release", lambda: dev.running_commits() == {
            "main": commit, "worker": commit}, timeout=120)
        wait_for("the device to be Online", lambda: re.search(
            rf"{uuid[:7]}\s+.*\s+{fleet}\s+Online\s+true", alice("device", "list")),
            timeout=60)
        wait_for("the server to know the release it runs (its image installs)",
                 lambda: re.search(rf"COMMIT:\s+{commit}", alice("device", uuid)),
                 timeout=60)

        def started() -> dict[str, str]:
            return {s: c["State"]["StartedAt"] for s, c in dev.containers().items()}

        before = started()
        out = alice("device", "restart", uuid, "--service", "main")
        assert f"Restarting services on device {uuid}" in out, out
        wait_for("main to restart", lambda: started()["main"] != before["main"], timeout=60)
        assert started()["worker"] == before["worker"], "worker was not restarted"
        refused = alice("device", "restart", uuid, "--service", "nosuch", ok=False)
        assert "not found on device" in refused, refused

        before = started()
        alice("fleet", "restart", fleet)  # every service of every device of the fleet
        wait_for("both services to restart", lambda: all(
            started()[s] != before[s] for s in ("main", "worker")), timeout=60)
        service_ssh(with_ssh(server, alice, token), server, uuid, dev.containers())

        # `balena device move`: to a fleet of another device type of the same architecture
        other = f"{name}/nuc"
        alice("fleet", "create", "nuc", "--type", "intel-nuc")
        moved = release_of(alice, other, image, tmp_path / "project2")
        alice("fleet", "create", "pi", "--type", "raspberrypi4-64")
        refused = alice("device", "move", uuid, "--fleet", f"{name}/pi", ok=False)
        assert "Incompatible application" in refused, refused  # the SDK checks first (the
        # server's own refusal: tests/server/balena/test_device_move.py)
        bob, _ = logged_in(server, tmp_path / "bob", f"rb{unique}")
        bob("fleet", "create", "mine", "--type", "generic-amd64")
        bob("device", "move", uuid, "--fleet", f"rb{unique}/mine", ok=False)
        alice("device", "move", uuid, "--fleet", f"rb{unique}/mine", ok=False)
        assert re.search(rf"{uuid[:7]}\s+.*\s+{fleet}\s+Online", alice("device", "list"))
        out = alice("device", "move", uuid, "--fleet", other)
        assert f"Device {uuid} was moved to fleet {other}" in out, out
        wait_for("the device to run the other fleet's release", lambda: dev.running_commits()
                 == {"main": moved, "worker": moved}, timeout=120)


def service_ssh(alice: Balena, server: Server, uuid: str,
                containers: dict[str, dict[str, Any]]) -> None:
    """`balena device ssh <uuid> <service>`: the CLI runs `docker ps` on the device's host
    through the front door (`host <uuid> "$(...)" ps --format ...`: the host session's
    `docker` talks to the device's own engine), picks the service's container by its name
    and asks for `enter <uuid> <container id>`; commands piped in run in that container."""
    port = str(server.ssh_port)
    for service in ("main", "worker"):
        out = alice("device", "ssh", uuid, service, "-p", port, timeout=90,
                    input="echo in-$BALENA_SERVICE_NAME-$(hostname); exit 0\n")
        assert f"in-{service}-{containers[service]['Config']['Hostname']}" in out, out
    import pexpect  # a terminal, as a person types: the CLI asks for one (ssh -t)

    child = pexpect.spawn(str(BALENA), ["device", "ssh", uuid, "main", "-p", port],
                          env=alice.env, encoding="utf-8", timeout=60)
    try:
        child.expect(r"[#$] ")
        child.sendline("echo tty-$BALENA_SERVICE_NAME-$(( 6 * 7 )); tty")
        child.expect("tty-main-42")
        child.expect("/dev/pts/")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus != 0  # the CLI reports the remote exit status
    missing = alice("device", "ssh", uuid, "nosuch", "-p", port, ok=False, timeout=90)
    assert 'Could not find a container matching service name "nosuch"' in missing, missing
    assert re.search(r"Available services:\s+main\s+worker|worker\s+main", missing), missing


def test_ssh_keys_are_edgefleets_own(server: Server, tmp_path: Path, unique: str) -> None:
    """`balena ssh-key add|list|rm` manage the keys edgefleet's SSH front door accepts;
    another user sees none of them and cannot remove them."""
    alice, token = logged_in(server, tmp_path / "alice", f"ka{unique}")
    bob, _ = logged_in(server, tmp_path / "bob", f"kb{unique}")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = key.with_suffix(".pub")

    alice("ssh-key", "add", "laptop", str(pub))
    mine = server.api("/ssh-keys", token=token)
    assert [(k["name"], k["public_key"]) for k in mine] == [
        ("laptop", " ".join(pub.read_text().split()[:2]))]
    key_id = mine[0]["id"]
    assert re.search(rf"^{key_id}\s+laptop\s*$", alice("ssh-key", "list"), re.M)
    shown = alice("ssh-key", str(key_id))
    assert "laptop" in shown and pub.read_text().split()[1] in shown, shown
    again = alice("ssh-key", "add", "laptop", str(pub), ok=False)
    assert "registered already" in again, again
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-ed25519 not-a-key at all\n")
    refused = alice("ssh-key", "add", "broken", str(bad), ok=False)
    assert "not an SSH public key" in refused, refused

    assert "laptop" not in bob("ssh-key", "list")
    bob("ssh-key", "rm", str(key_id), "--yes", ok=None)
    assert len(server.api("/ssh-keys", token=token)) == 1, "bob removed none of alice's keys"

    alice("ssh-key", "rm", str(key_id), "--yes")
    assert server.api("/ssh-keys", token=token) == []


def test_tags_on_devices_fleets_and_releases(server: Server, image: str, tmp_path: Path,
                                             unique: str) -> None:
    """`balena tag set` creates or overwrites (Pine's upsert), `balena tag list` shows,
    `balena tag rm` removes, on a device, a fleet and a release (also `push --release-tag`);
    another user can neither see nor set them. `balena device deactivate` is refused (billing:
    nothing to map it to), naming what to do instead. And `balena device note`, which adds to
    the device's running notes."""
    name = f"tg{unique}"
    alice, token = logged_in(server, tmp_path / "alice", name)
    bob, _ = logged_in(server, tmp_path / "bob", f"tb{unique}")
    fleet = f"{name}/tagged"
    alice("fleet", "create", "tagged", "--type", "generic-amd64")
    out = alice("device", "register", fleet)
    device = re.search(rf"Registering to {fleet}: ([0-9a-f]{{32}})", out)
    assert device, out
    commit = release_of(alice, fleet, image, tmp_path / "project",
                        "--release-tag", "owner", name)
    assert re.search(rf"TAGS:\s+owner={name}", alice("release", commit))
    refused = alice("release", "invalidate", commit, ok=False)  # was "invalidated", a no-op
    assert "keeps no invalid releases" in refused, refused
    alice("tag", "rm", "owner", "--release", commit)

    for where in (("--device", device.group(1)), ("--fleet", fleet), ("--release", commit)):
        assert "No tags found" in alice("tag", "list", *where, ok=False)  # exits 1
        alice("tag", "set", "site", "north", *where)
        alice("tag", "set", "site", "south pole", *where)  # overwrites
        alice("tag", "set", "flag", *where)  # no value: empty
        listing = alice("tag", "list", *where)
        assert re.search(r"^site\s+south pole\s*$", listing, re.M), (where, listing)
        assert re.search(r"^flag\s*$", listing, re.M), (where, listing)
        alice("tag", "rm", "flag", *where)
        listing = alice("tag", "list", *where)
        assert "flag" not in listing and "south pole" in listing, (where, listing)
    refused = alice("tag", "set", "two words", "x", "--fleet", fleet, ok=False)
    assert "is not a tag key" in refused, refused

    assert "south pole" not in bob("tag", "list", "--device", device.group(1), ok=None)
    bob("tag", "set", "site", "stolen", "--device", device.group(1), ok=False)
    bob("tag", "rm", "site", "--fleet", fleet, ok=None)
    assert "south pole" in alice("tag", "list", "--device", device.group(1))
    assert "south pole" in alice("tag", "list", "--fleet", fleet)

    refused = alice("device", "deactivate", device.group(1), "--yes", ok=False)
    assert "edgefleet does not deactivate devices" in refused, refused
    assert f"balena device rm {device.group(1)}" in refused, refused

    alice("device", "note", "fan replaced", "--device", device.group(1))
    assert re.search(r"NOTE:\s+fan replaced", alice("device", device.group(1)))
    notes = server.api(f"/devices/{device.group(1)}/notes", token=token)
    assert [(n["author"], n["text"]) for n in notes] == [(name, "fan replaced")], notes


def test_api_keys_are_edgefleets_tokens(server: Server, tmp_path: Path, unique: str) -> None:
    """`balena api-key list` shows the user's API tokens (those of `edgefleet token list`),
    never a secret; `balena api-key revoke` revokes them; another user sees and revokes none
    of them."""
    alice, token = logged_in(server, tmp_path / "alice", f"ak{unique}")
    bob, _ = logged_in(server, tmp_path / "bob", f"kb{unique}")
    r = httpx.post(f"{server.url}/api/v1/tokens", json={"name": "ci", "expires_in_s": 86400},
                   headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 201, r.text
    ci = r.json()["key"]
    [ci_row] = [k for k in server.api("/tokens", token=token) if k["name"] == "ci"]

    listing = alice("api-key", "list")
    assert re.search(rf"^{ci_row['id']}\s+ci\s+\S+\s+N/a\s+\S+", listing, re.M), listing
    assert token not in listing and ci not in listing, listing
    assert "ci" not in bob("api-key", "list").split()
    bob("api-key", "revoke", str(ci_row["id"]), ok=None)
    assert httpx.get(f"{server.url}/api/v1/tokens", timeout=30,
                     headers={"Authorization": f"Bearer {ci}"}).status_code == 200

    assert "Successfully revoked" in alice("api-key", "revoke", str(ci_row["id"]))
    assert httpx.get(f"{server.url}/api/v1/tokens", timeout=30,
                     headers={"Authorization": f"Bearer {ci}"}).status_code == 401
    assert not re.search(r"^\d+\s+ci\s", alice("api-key", "list"), re.M)


def test_organization_create(server: Server, tmp_path: Path, unique: str) -> None:
    """`balena organization create <name>` makes an edgefleet organization the user owns
    (its handle made from the name); `organization list` shows it, another user's does not;
    the same name again is refused."""
    alice, token = logged_in(server, tmp_path / "alice", f"oa{unique}")
    bob, _ = logged_in(server, tmp_path / "bob", f"ob{unique}")
    out = alice("organization", "create", f"Acme {unique}")
    handle = f"acme_{unique}".lower()
    assert re.search(rf"HANDLE:\s+{handle}\b", out), out
    assert {"handle": handle, "personal": False, "role": "owner"} in server.api(
        "/orgs", token=token)
    assert handle in alice("organization", "list")
    assert handle not in bob("organization", "list")
    again = alice("organization", "create", f"Acme {unique}", ok=False)
    assert f"organization '{handle}' exists" in again, again
    alice("fleet", "create", "widgets", "--type", "generic-amd64", "--organization", handle)
    assert f"{handle}/widgets" in alice("fleet", "list")
