"""Issue 2 acceptance: the supervisor on the real dockerd and the local registry."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from edgefleet.device.targets import TargetSource
from edgefleet.model.errors import InvalidInput
from tests.device.conftest import Device, make_device
from tests.support import images

pytestmark = pytest.mark.engine

SEED004 = """
version: '2.1'
services:
  frontend:
    build: ./frontend
    network_mode: host
    command:
      - sh
      - -c
      - echo First volume >> /frontend-data/somedata; trap exit TERM; while true; do sleep 1; done
    volumes:
      - 'my-first-volume:/frontend-data'
      - 'a-second-volume:/backend-data'
  backend:
    build: ./backend
    expose:
      - "1234"
    ports:
      - "127.0.0.1:{port}:1234"
    environment:
      GREETING: "{greeting}"
    command:
      - sh
      - -c
      - >-
        trap exit TERM; echo $$GREETING >> /backend-persistence/somedata;
        httpd -f -p 1234 -h / & wait
    volumes:
      - 'a-second-volume:/backend-persistence'
volumes:
  my-first-volume:
  a-second-volume:
"""


_PRIVILEGED: list[bool] = []


def privileged_containers_run() -> bool:
    """Whether this host can start a privileged container (probed once)."""
    if not _PRIVILEGED:
        from tests.support.images import REGISTRY

        with images.engine_client() as c:
            ref = f"{REGISTRY}/ef-dev-sleeper:v1"
            c.post("/images/create", params={"fromImage": ref.rsplit(":", 1)[0], "tag": "v1"})
            r = c.post("/containers/create", json={
                "Image": ref, "Cmd": ["true"], "HostConfig": {"Privileged": True}})
            cid = r.json()["Id"]
            ok = c.post(f"/containers/{cid}/start").status_code == 204
            c.delete(f"/containers/{cid}", params={"force": "1"})
        _PRIVILEGED.append(ok)
    return _PRIVILEGED[0]


def volume_file(name: str, path: str) -> str:
    with images.engine_client() as c:
        mountpoint = c.get(f"/volumes/{name}").json()["Mountpoint"]
    return (Path(mountpoint) / path).read_text()


def seed004(port: int, greeting: str) -> str:
    return SEED004.replace("{port}", str(port)).replace("{greeting}", greeting)


async def test_seed004_multicontainer_app_and_volume_data_survives_a_new_release(
    device: Device, test_images: dict[str, Any], unique: str
) -> None:
    port = 20000 + int(unique[:4], 16) % 20000
    imgs = {"frontend": test_images["sleeper"].ref, "backend": test_images["web"].ref}
    device.supervisor.set_target(target=device.compose_target(seed004(port, "hello"), imgs),
                                 source=TargetSource.DIRECT)
    await device.converge()
    ctrs = await device.containers()
    assert {s: c.status for s, c in ctrs.items()} == {"frontend": "running",
                                                       "backend": "running"}
    with images.engine_client() as c:
        fe = c.get(f"/containers/{ctrs['frontend'].id}/json").json()
        be = c.get(f"/containers/{ctrs['backend'].id}/json").json()
    assert fe["HostConfig"]["NetworkMode"] == "host"
    net = f"{device.app_uuid}_default"
    assert be["HostConfig"]["NetworkMode"] == net
    assert "backend" in be["NetworkSettings"]["Networks"][net]["Aliases"]
    assert "1234/tcp" in be["Config"]["ExposedPorts"]
    assert be["HostConfig"]["PortBindings"]["1234/tcp"][0]["HostPort"] == str(port)
    for _ in range(50):  # the backend answers on its published port
        proc = await asyncio.create_subprocess_exec(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/",
            stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        if out in (b"200", b"404"):
            break
        await asyncio.sleep(0.1)
    assert out in (b"200", b"404")
    await asyncio.sleep(0.5)
    assert volume_file("77_a-second-volume", "somedata") == "hello\n"
    assert volume_file("77_my-first-volume", "somedata") == "First volume\n"

    # a new release that changes the backend: data in both volumes survives
    imgs2 = {"frontend": test_images["sleeper"].ref, "backend": test_images["web2"].ref}
    device.supervisor.set_target(target=device.compose_target(
        seed004(port, "again"), imgs2, commit="c2", release_id=2), source=TargetSource.DIRECT)
    await device.converge()
    after = await device.containers()
    assert after["backend"].id != ctrs["backend"].id
    assert after["frontend"].id == ctrs["frontend"].id, "frontend only renamed"
    assert after["frontend"].name.endswith("_2_c2")
    await asyncio.sleep(0.5)
    assert volume_file("77_a-second-volume", "somedata") == "hello\nagain\n"
    assert volume_file("77_my-first-volume", "somedata") == "First volume\n"
    messages = device.log_messages()
    for expected in ("Downloading image", "Installing service 'backend'",
                     "Started service 'backend'", "Killing service 'backend'",
                     "Updating metadata of service 'frontend'"):
        assert any(expected in m for m in messages), expected


async def test_same_target_twice_and_supervisor_restart_recreate_nothing(
    device: Device, test_images: dict[str, Any], tmp_path: Path
) -> None:
    compose = """
services:
  a: {command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"], restart: always}
  b: {command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"], environment: {X: "1"}}
"""
    imgs = {"a": test_images["sleeper"].ref, "b": test_images["sleeper"].ref}
    target = device.compose_target(compose, imgs)
    device.supervisor.set_target(target=target, source=TargetSource.DIRECT)
    await device.converge()
    ids = {s: c.id for s, c in (await device.containers()).items()}
    device.supervisor.set_target(target=target, source=TargetSource.DIRECT)
    assert (await device.supervisor.reconcile_once()).converged
    # a new supervisor over the same store: nothing is recreated
    again = make_device(data_dir=tmp_path, scope=device.engine.scope, app_uuid=device.app_uuid,
                        store=device.store)
    try:
        assert again.supervisor.target is not None
        assert (await again.supervisor.reconcile_once()).converged
        assert {s: c.id for s, c in (await again.containers()).items()} == ids
        # one service's environment changes: only that service is recreated
        changed = compose.replace('X: "1"', 'X: "2"')
        again.supervisor.set_target(target=again.compose_target(changed, imgs),
            source=TargetSource.DIRECT)
        await again.converge()
        now = {s: c.id for s, c in (await again.containers()).items()}
        assert now["a"] == ids["a"] and now["b"] != ids["b"]
    finally:
        await again.engine.close()


async def test_bad_target_is_rejected_and_the_running_release_keeps_running(
    device: Device, test_images: dict[str, Any]
) -> None:
    compose = ('services:\n  a: {command: ["sh", "-c",'
               ' "trap exit TERM; while true; do sleep 1; done"]}\n')
    imgs = {"a": test_images["sleeper"].ref}
    device.supervisor.set_target(target=device.compose_target(compose, imgs),
        source=TargetSource.DIRECT)
    await device.converge()
    before = (await device.containers())["a"].id
    good = device.store.load_target()
    bad = compose.replace("command:", "ports: [notaport], command:")
    with pytest.raises(InvalidInput, match=r"services\.a\.composition\.ports"):
        device.supervisor.set_target(target=device.compose_target(bad, imgs, commit="c2"),
                                     source=TargetSource.DIRECT)
    assert device.store.load_target() == good
    assert (await device.supervisor.reconcile_once()).converged
    assert (await device.containers())["a"].id == before
    assert any("Rejected target state" in m for m in device.log_messages())
    [app] = device.store.apps()
    assert (app.update_status, app.commit) == ("rejected", "c1"), app
    assert app.status_message.startswith("release c2 rejected: ")
    assert "ports" in app.status_message
    device.supervisor.set_target(target=device.compose_target(compose, imgs, commit="c3"),
                                 source=TargetSource.DIRECT)
    await device.converge()
    [app] = device.store.apps()
    assert (app.update_status, app.commit) == ("done", "c3"), "a good target clears it"


async def test_single_service_app_gets_persistent_data_and_restart_policy(
    device: Device, test_images: dict[str, Any]
) -> None:
    from edgefleet.model.resolve import SINGLE_SERVICE_COMPOSITION
    from edgefleet.model.target import ReleaseTarget

    composition: dict[str, Any] = {}  # no compose file: the default composition applies
    if not privileged_containers_run():
        # This host's capability bounding set cannot grant a privileged container every
        # capability (seen in some VMs): run the default composition minus `privileged`.
        composition = {k: v for k, v in SINGLE_SERVICE_COMPOSITION.items()
                       if k != "privileged"}
    rel = {"id": 1, "services": {"main": {"id": 1, "image_id": 1, "composition": composition,
                                          "image": test_images["sleeper"].ref}},
           "volumes": {"resin-data": {}} if composition else {}}
    device.supervisor.set_target(target=device.target(ReleaseTarget.model_validate(rel)),
                                 source=TargetSource.DIRECT)
    await device.converge()
    main = (await device.containers())["main"]
    with images.engine_client() as c:
        info = c.get(f"/containers/{main.id}/json").json()
        assert info["HostConfig"]["Privileged"] is (not composition)
        assert info["HostConfig"]["NetworkMode"] == "host"
        assert info["HostConfig"]["RestartPolicy"]["Name"] == "always"
        assert any(m.get("Name") == "77_resin-data" and m["Destination"] == "/data"
                   for m in info["Mounts"])
        # the main process crashes: the engine restarts it (policy always); nothing recreated
        os.kill(info["State"]["Pid"], signal.SIGKILL)
    for _ in range(100):
        await asyncio.sleep(0.1)
        now = (await device.containers())["main"]
        if now.restart_count >= 1 and now.status == "running":
            break
    assert now.id == main.id and now.restart_count >= 1 and now.status == "running"
    assert (await device.supervisor.reconcile_once()).converged


async def test_restart_no_is_respected_without_a_replace_loop(
    device: Device, test_images: dict[str, Any]
) -> None:
    compose = """
services:
  once: {restart: "no"}
  failing: {restart: on-failure}
  keep: {command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]}
"""
    imgs = {"once": test_images["exiter"].ref, "failing": test_images["exiter"].ref,
            "keep": test_images["sleeper"].ref}
    device.supervisor.set_target(target=device.compose_target(compose, imgs),
        source=TargetSource.DIRECT)
    await device.converge()
    await asyncio.sleep(2)
    first = await device.containers()
    assert first["once"].status == "exited" and first["once"].exit_code == 3
    assert first["failing"].restart_count >= 1, "on-failure restarts a failing service"
    for _ in range(3):
        assert (await device.supervisor.reconcile_once()).converged
    again = await device.containers()
    assert again["once"].id == first["once"].id and again["once"].status == "exited"
    assert again["once"].restart_count == 0
