"""`edgefleet push` end to end: upload → build on the real dockerd → push to the real registry
→ release recorded → devices get it; failures make failed releases and change no device."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.client import ApiError, FleetClient, Login
from edgefleet.model.formats import parse_v3
from tests.server.conftest import DeviceInfo, FleetInfo
from tests.support import images
from tests.support.fleet_server import RunningServer

BASE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""


@pytest.fixture
def client(server: RunningServer, fleet: FleetInfo, registry: str) -> Iterator[FleetClient]:
    c = FleetClient(login=Login(url=server.url, token=fleet.tenant.token))
    yield c
    for rel in c.releases(fleet=fleet.name):  # drop the images these tests built
        with images.engine_client() as engine:
            for img in rel["images"]:
                repo = img["ref"].split("@")[0].rsplit(":", 1)[0]
                engine.delete(f"/images/{repo}:{rel['commit']}", params={"force": "1"})
    c.close()


def project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def with_busybox(dirs: list[Path]) -> None:
    for d in dirs:
        shutil.copy(images.BUSYBOX, d / "busybox")


def push(client: FleetClient, fleet: str, root: Path) -> tuple[dict[str, Any],
                                                               list[dict[str, Any]]]:
    events = list(client.push(fleet=fleet, source=root))
    assert events[0]["type"] == "release"
    return events[-1], events


def image_labels(ref: str) -> dict[str, str]:
    with images.engine_client() as engine:
        info = engine.get(f"/images/{ref}/json").json()
    return dict(info["Config"]["Labels"] or {})


def test_push_compose_builds_pushes_and_targets_devices(
        client: FleetClient, fleet: FleetInfo, device: DeviceInfo, tmp_path: Path) -> None:
    root = project(tmp_path / "app", {
        "docker-compose.yml": "services:\n  web:\n    build: ./web\n    restart: always\n"
                              "    environment: {MODE: web}\n"
                              "  worker:\n    build:\n      context: ./worker\n"
                              "      args: {GREETING: hi}\n",
        "web/Dockerfile": BASE + 'CMD ["sh", "-c", "sleep 1000"]\n',
        "worker/Dockerfile.template": BASE + "ARG GREETING\n"
        "LABEL machine=%%BALENA_MACHINE_NAME%% arch=%%BALENA_ARCH%% greeting=$GREETING\n",
    })
    with_busybox([root / "web", root / "worker"])
    done, events = push(client, fleet.name, root)
    assert done["type"] == "done" and done["status"] == "success", done
    assert any(e["type"] == "build" and e["service"] == "web" for e in events)
    assert {e["service"] for e in events if e["type"] == "pushed" and e["digest"]} == \
        {"web", "worker"}
    release = client.release(commit=done["commit"])
    assert release["status"] == "success"
    refs = {i["service"]: i["ref"] for i in release["images"]}
    assert all("@sha256:" in r and r.startswith(images.REGISTRY) for r in refs.values())
    # the template got the fleet's device type and arch, the build args their values
    labels = image_labels(refs["worker"].split("@")[0] + ":" + done["commit"])
    assert labels["machine"] == "generic-amd64" and labels["arch"] == "amd64"
    assert labels["greeting"] == "hi"
    # the image really is in the registry, under the digest recorded
    import httpx
    repo, digest = refs["web"].split("@")
    name = repo.split("/", 1)[1]
    r = httpx.head(f"http://{images.REGISTRY}/v2/{name}/manifests/{digest}", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.status_code == 200
    doc = device.http.get(f"/device/v3/{device.uuid}/state").json()
    parsed = parse_v3(data=doc, device_uuid=device.uuid)  # what a device will accept
    assert parsed.device.apps[fleet.uuid].release is not None
    state = doc[device.uuid]
    rel = state["apps"][fleet.uuid]["releases"][done["commit"]]
    assert rel["services"]["web"]["image"] == refs["web"]
    assert rel["services"]["web"]["composition"]["environment"] == {"MODE": "web"}
    assert "build" not in rel["services"]["worker"]["composition"]


def test_single_dockerfile_and_dockerignore(client: FleetClient, fleet: FleetInfo,
                                            device: DeviceInfo, tmp_path: Path) -> None:
    root = project(tmp_path / "one", {
        "Dockerfile": BASE + "COPY . /ctx/\n"
        'RUN ["/bin/busybox", "sh", "-c", "test -e /ctx/keep.txt && test ! -e /ctx/secret.txt'
        ' && test ! -e /ctx/logs/a.log && test -e /ctx/logs/keep.log"]\n',
        ".dockerignore": "secret.txt\nlogs/*.log\n!logs/keep.log\n",
        "keep.txt": "k", "secret.txt": "s", "logs/a.log": "a", "logs/keep.log": "b",
    })
    with_busybox([root])
    done, _ = push(client, fleet.name, root)
    assert done["status"] == "success", done
    state = device.http.get(f"/device/v3/{device.uuid}/state").json()[device.uuid]
    services = state["apps"][fleet.uuid]["releases"][done["commit"]]["services"]
    assert list(services) == ["main"] and services["main"]["composition"] == {}


def test_failed_build_changes_no_device(client: FleetClient, fleet: FleetInfo,
                                        device: DeviceInfo, tmp_path: Path) -> None:
    good = project(tmp_path / "good", {"Dockerfile": BASE})
    with_busybox([good])
    ok, _ = push(client, fleet.name, good)
    before = device.http.get(f"/device/v3/{device.uuid}/state")
    bad = project(tmp_path / "bad", {"Dockerfile": BASE + 'RUN ["/bin/busybox", "false"]\n'})
    with_busybox([bad])
    done, _ = push(client, fleet.name, bad)
    assert done["status"] == "failed" and "main" in done["error"]
    assert client.release(commit=done["commit"])["status"] == "failed"
    after = device.http.get(f"/device/v3/{device.uuid}/state",
                            headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 304
    assert client.fleet(name=fleet.name)["release"] == ok["commit"]
    with pytest.raises(ApiError) as err:  # a failed release cannot be pinned
        client.update_device(device=device.uuid, pinned_release=done["commit"])
    assert err.value.status == 409


def test_bad_projects_are_refused_and_record_nothing(client: FleetClient, fleet: FleetInfo,
                                                     tmp_path: Path) -> None:
    cases = {
        "empty": {"README": "nothing to build"},
        "badyaml": {"docker-compose.yml": "services: [\n"},
        "nobuild": {"docker-compose.yml": "services:\n  a: {}\n"},
        "badkey": {"docker-compose.yml": "services:\n  a:\n    build: .\n    bogus: 1\n",
                   "Dockerfile": BASE},
        "missingctx": {"docker-compose.yml": "services:\n  a:\n    build: ./nope\n"},
    }
    for name, files in cases.items():
        with pytest.raises(ApiError) as err:
            list(client.push(fleet=fleet.name, source=project(tmp_path / name, files)))
        assert err.value.status == 400, name
    assert client.releases(fleet=fleet.name) == []


def test_push_needs_own_fleet(server: RunningServer, client: FleetClient, tmp_path: Path
                              ) -> None:
    from tests.server.conftest import new_fleet, new_tenant

    other = new_fleet(new_tenant(server))
    root = project(tmp_path / "x", {"Dockerfile": BASE})
    with pytest.raises(ApiError) as err:
        list(client.push(fleet=other.name, source=root))
    assert err.value.status == 404
    raw = client.http.post(f"/api/v1/fleets/{other.name}/releases", content=b"junk")
    assert raw.status_code == 404
    assert json.loads(raw.text)["detail"].startswith("no fleet")


def test_without_a_registry_builds_are_refused_but_image_releases_work(tmp_path: Path) -> None:
    from tests.server.conftest import new_fleet, new_tenant
    from tests.support.fleet_server import run_server

    with run_server(data_dir=tmp_path / "srv", registry=None) as srv:
        fleet = new_fleet(new_tenant(srv))
        c = FleetClient(login=Login(url=srv.url, token=fleet.tenant.token))
        built = project(tmp_path / "b", {"Dockerfile": BASE})
        with pytest.raises(ApiError) as err:
            list(c.push(fleet=fleet.name, source=built))
        assert err.value.status == 409 and "registry" in str(err.value)
        assert c.releases(fleet=fleet.name) == []
        ref = f"{images.REGISTRY}/some/app@sha256:{'c' * 64}"
        only_images = project(tmp_path / "i", {
            "docker-compose.yml": f"services:\n  app:\n    image: {ref}\n"})
        done, _ = push(c, fleet.name, only_images)
        assert done["status"] == "success"
        assert [i["ref"] for i in c.release(commit=done["commit"])["images"]] == [ref]
        c.close()
