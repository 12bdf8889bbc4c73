"""Image cleanup after an update, `supervisor prune` and `engine prune` (dry run and real), on
a private dockerd only (issue 3 item 4, issue 6 item 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgefleet.device.targets import TargetSource
from tests.device.conftest import Device, make_device
from tests.support import images
from tests.support.dockerd import Dockerd

pytestmark = pytest.mark.engine
LOOP = ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
COMPOSE = """
services:
  app:
    command: ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgefleet", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def engine_images(sock: str) -> dict[str, list[str]]:
    """Image id → tags on the private engine."""
    with images.engine_client(sock) as c:
        return {i["Id"]: i.get("RepoTags") or [] for i in c.get("/images/json").json()}


def pull(sock: str, ref: str) -> str:
    name, tag = ref.rsplit(":", 1)
    with images.engine_client(sock) as c:
        c.post("/images/create", params={"fromImage": name, "tag": tag}).raise_for_status()
        return str(c.get(f"/images/{ref}/json").json()["Id"])


def make_leftovers(sock: str, unique: str, v1: str, other: str) -> dict[str, str]:
    """A dangling image, an image nobody manages, a stopped non-supervised container and an
    unused volume on the private engine."""
    tag = f"local-{unique}:x"
    first = images.build(tag, dockerfile=images.busybox_dockerfile(cmd=["true"]), sock=sock)
    images.build(tag, dockerfile=images.busybox_dockerfile(cmd=["false"]), sock=sock)
    other_id = pull(sock, other)
    with images.engine_client(sock) as c:
        ctr = c.post("/containers/create", params={"name": f"manual-{unique}"},
                     json={"Image": other, "Cmd": ["true"]}).json()["Id"]
        c.post("/volumes/create", json={"Name": f"keepme-{unique}"}).raise_for_status()
    return {"dangling": first, "other": other_id, "container": ctr,
            "v1": pull(sock, v1), "volume": f"keepme-{unique}"}


async def test_cleanup_after_update_and_prune_commands_delete_only_what_is_safe(
    private_dockerd: Dockerd, registry: str, unique: str, tmp_path: Path,
    test_images: dict[str, Any]
) -> None:
    sock = private_dockerd.sock
    dev: Device = make_device(data_dir=tmp_path, scope=f"p{unique}", app_uuid=f"app{unique}",
                              socket=sock)
    try:
        # content unique to this test, so no other image (built from the same cache) shares ids
        v1 = images.build_and_push(f"prune-{unique}", "v1", cmd=LOOP,
                                   extra=f"RUN echo {unique}-1 > /v")
        v2 = images.build_and_push(f"prune-{unique}", "v2", cmd=LOOP,
                                   extra=f"RUN echo {unique}-2 > /v")
        dev.supervisor.set_target(target=dev.compose_target(COMPOSE, {"app": v1.ref}),
                                  source=TargetSource.DIRECT)
        await dev.converge()
        v1_id = (await dev.containers())["app"].image_id
        dev.supervisor.set_target(target=dev.compose_target(COMPOSE, {"app": v2.ref},
                                                            commit="c2", release_id=2),
                                  source=TargetSource.DIRECT)
        await dev.converge()
        assert v1_id not in engine_images(sock), "the old release's image went after the update"
        assert [r.ref for r in dev.store.images()] == [v2.ref]
        v2_id = (await dev.containers())["app"].image_id
    finally:
        await dev.engine.close()
    # leftovers: v1 pulled again and recorded (a supervisor killed before its cleanup), ...
    left = make_leftovers(sock, unique, v1.ref, test_images["sleeper"].ref)
    dev.store.set_image(ref=v1.ref, app_uuid=dev.app_uuid, service_name="app",
                        status="Downloaded", image_id=left["v1"])
    common = ["--data-dir", str(tmp_path), "--engine-socket", sock, "--json"]

    dry = cli("supervisor", "prune", "--dry-run", "--scope", f"p{unique}", *common)
    assert dry.returncode == 0, dry.stderr
    listed = json.loads(dry.stdout)
    assert [i["id"] for i in listed["images"]] == [left["v1"]] and listed["dry_run"]
    assert left["v1"] in engine_images(sock), "a dry run deletes nothing"

    done = json.loads(cli("supervisor", "prune", "--scope", f"p{unique}", *common).stdout)
    assert [i["id"] for i in done["images"] if i["removed"]] == [left["v1"]]
    now = engine_images(sock)
    assert left["v1"] not in now and {v2_id, left["other"], left["dangling"]} <= set(now)
    assert [r.ref for r in dev.store.images()] == [v2.ref]

    edry = json.loads(cli("engine", "prune", "--dry-run", *common).stdout)
    assert [i["id"] for i in edry["images"]] == [left["dangling"]]
    assert left["dangling"] in engine_images(sock)
    eng = cli("engine", "prune", "--data-dir", str(tmp_path), "--engine-socket", sock)
    assert eng.returncode == 0 and "Total reclaimed space" in eng.stdout, eng.stdout
    now = engine_images(sock)
    assert left["dangling"] not in now and {v2_id, left["other"]} <= set(now)
    with images.engine_client(sock) as c:
        assert c.get(f"/volumes/{left['volume']}").status_code == 200, "volumes are kept"
        assert c.get(f"/containers/{left['container']}/json").status_code == 200
    assert dev.store.apps()[0].update_status == "done"
    dev.store.close()


def test_prune_against_a_dead_engine_or_missing_store_fails_clearly(tmp_path: Path) -> None:
    dead = cli("engine", "prune", "--engine-socket", str(tmp_path / "nothing.sock"),
               "--data-dir", str(tmp_path))
    assert dead.returncode == 2 and "engine" in dead.stderr
    nostore = cli("supervisor", "prune", "--data-dir", str(tmp_path / "none"))
    assert nostore.returncode == 2 and "no supervisor store" in nostore.stdout
