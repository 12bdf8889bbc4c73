"""Compose files and targets read as balena reads them (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgefleet.engine import translate
from edgefleet.model import formats
from edgefleet.model.compose_file import load_compose
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput
from edgefleet.model.resolve import desired_state
from edgefleet.model.service import ServiceSpec

DEVICE = DeviceContext(uuid="dev1", device_type="raspberrypi4-64", arch="aarch64",
                       supervisor_version="17.0.1", lock_root="/tmp/locks", scope="s1",
                       device_api_key="devkey", api_endpoint="https://api.example",
                       engine_socket="/run/engine.sock")


def resolve(compose: str, *, device: DeviceContext = DEVICE) -> dict[str, ServiceSpec]:
    doc = load_compose(compose)
    images = {name: f"reg/{name}:1" for name in doc["services"]}
    rel = formats.release_from_compose(compose_yaml=doc, images=images)
    target = formats.parse_v3(data={"dev1": {"apps": {"app1": {
        "id": 7, "name": "a", "releases": {"c1": rel.model_dump(mode="json")}}}}})
    return dict(desired_state(target=target, device=device).apps["app1"].services)


def one(compose_service: str, **kw: Any) -> ServiceSpec:
    return resolve("services:\n  s:\n" + compose_service, **kw)["s"]


def test_yaml_1_2_keeps_on_a_string_and_80_80_a_port() -> None:
    s = one("    image: x\n    environment:\n      UDEV: on\n      YES: yes\n"
            "    ports:\n      - 80:80\n")
    assert s.environment["UDEV"] == "on" and s.environment["YES"] == "yes"
    assert [(p.host_port, p.container_port) for p in s.ports] == [(80, 80)]


def test_image_only_compose_is_not_privileged_but_no_compose_file_is() -> None:
    s = one("    image: nginx\n")
    assert not s.privileged and s.network_mode != "host"
    target = formats.parse_v3(data={"dev1": {"apps": {"app1": {"id": 7, "releases": {"c": {
        "services": {"main": {"image": "x", "composition": {}}}}}}}}})
    main = desired_state(target=target, device=DEVICE).apps["app1"].services["main"]
    assert main.privileged and main.network_mode == "host"


def test_feature_labels_false_values_disable_and_balena_api_gives_the_device_key() -> None:
    s = one("    image: x\n    labels:\n      io.balena.features.dbus: 'false'\n"
            "      io.balena.features.sysfs: '0'\n      io.balena.features.procfs: off\n"
            "      io.resin.features.resin-api: '1'\n")
    assert not any(m.source in ("/run/dbus", "/sys", "/proc") for m in s.mounts)
    assert s.environment["BALENA_API_KEY"] == s.environment["RESIN_API_KEY"] == "devkey"
    assert s.environment["BALENA_API_URL"] == "https://api.example"


def test_balena_socket_is_mounted_where_balena_mounts_it() -> None:
    s = one("    image: x\n    labels:\n      io.balena.features.balena-socket: '1'\n")
    targets = {m.target for m in s.mounts if m.source == "/run/engine.sock"}
    assert {"/host/run/balena-engine.sock", "/var/run/balena-engine.sock",
            "/var/run/docker.sock"} <= targets
    assert s.environment["DOCKER_HOST"] == "unix:///host/run/balena-engine.sock"


def test_defaults_balena_gives_every_service() -> None:
    s = one("    image: x\n")
    assert s.tty is True
    assert s.environment["USER"] == "root"
    assert s.environment["RESIN_APP_LOCK_PATH"] == "/tmp/balena/updates.lock"
    assert s.environment["RESIN_SERVICE_KILL_ME_PATH"] == "/tmp/balena/handover-complete"
    assert {m.target for m in s.mounts if m.type == "bind"} >= {"/tmp/balena", "/tmp/resin"}


def test_contracts_reject_the_release_or_skip_optional_services() -> None:
    compose = ("services:\n  a:\n    image: x\n  b:\n    image: y\n    labels:\n"
               "      io.balena.features.requires.hw.device-type: jetson-nano\n")
    with pytest.raises(InvalidInput, match=r"contract not met.*jetson-nano"):
        resolve(compose)
    got = resolve(compose + "      io.balena.features.optional: 'true'\n")
    assert set(got) == {"a"}
    ok = resolve("services:\n  a:\n    image: x\n    labels:\n"
                 "      io.balena.features.requires.sw.supervisor: '>=16.0.0'\n"
                 "      io.balena.features.requires.sw.arch: aarch64\n")
    assert set(ok) == {"a"}
    with pytest.raises(InvalidInput, match=r"sw\.supervisor"):
        resolve("services:\n  a:\n    image: x\n    labels:\n"
                "      io.balena.features.requires.sw.supervisor: ^18.0.0\n")


def test_gpu_and_new_keys_reach_the_create_body() -> None:
    s = one("    image: x\n    labels:\n      io.balena.features.gpu: '1'\n"
            "    pids_limit: 100\n    cpu_quota: 50000\n    cgroup: host\n    uts: host\n"
            "    mac_address: 02:42:ac:11:00:02\n    device_cgroup_rules: ['c 1:3 mr']\n"
            "    container_name: ignored\n    profiles: [debug]\n    x-note: 1\n",
            device=DEVICE.model_copy(update={"host_features": DEVICE.host_features | {"gpu"}}))
    body = translate.create_body(spec=s)
    host = body["HostConfig"]
    assert host["PidsLimit"] == 100 and host["CpuQuota"] == 50000
    assert host["CgroupnsMode"] == "host" and host["UTSMode"] == "host"
    assert host["DeviceRequests"][0]["Capabilities"] == [["gpu"]]
    assert host["DeviceCgroupRules"] == ["c 1:3 mr"]
    assert body["MacAddress"] == "02:42:ac:11:00:02"


def test_coercions_ports_trimming_and_null_env() -> None:
    got = resolve("name: proj\nx-common: &c {A: 1}\nservices:\n  a:\n    image: x\n"
                  "    ports: ['[::1]:6001:6001', '8080']\n    labels: ['k=v', 'b=true']\n"
                  "    environment: {N: null}\n  b:\n    image: y\n"
                  "    network_mode: 'service: a'\n    restart: sometimes\n"
                  "volumes:\n  v:\n    driver_opts: {size: 1500}\nnetworks:\n  n:\n"
                  "    driver_opts: {com.docker.network.driver.mtu: 1500}\n"
                  "    labels: {flag: true}\n")
    a, b = got["a"], got["b"]
    assert [(p.host_ip, p.host_port, p.container_port) for p in a.ports] == [
        ("::1", 6001, 6001), ("", 8080, 8080)]
    assert a.labels["k"] == "v" and a.environment["N"] == ""
    assert b.network_mode == "service:a" and b.restart == "always"


@pytest.mark.parametrize(("compose", "reason"), [
    ("services:\n  a:\n    image: x\nvolumes:\n  v:\n    external: true\n", "external"),
    ("services:\n  a:\n    image: x\nvolumes:\n  v:\n    driver: nfs\n", "drivers"),
    ("services:\n  a:\n    image: x\n    volumes: ['v:/v']\nvolumes:\n  v:\n    driver_opts:\n"
     "      type: none\n      o: bind\n      device: /\n", "binds a host path"),
    ("services:\n  a:\n    image: x\nnetworks:\n  n:\n    external: true\n", "external"),
    ("services:\n  a:\n    image: x\n    networks:\n      n:\n        link_local_ips: "
     "['169.254.1.1']\nnetworks:\n  n: {}\n", "link_local_ips"),
    ("services:\n  a:\n    image: x\n    network_mode: container:balena_supervisor\n",
     "not allowed"),
    ("services:\n  a:\n    image: x\n    pid: container:other\n", "not allowed"),
    ("services:\n  a:\n    image: x\n    ipc: container:other\n", "refused"),
    ("services:\n  a:\n    image: x\n    network_mode: service:nope\n", "same release"),
    ("services:\n  a:\n    image: x\n    deploy: {replicas: 2}\n", "service.deploy is not"),
    ("services:\n  a:\n    image: x\n    security_opt: [label=disable]\n",
     "no-new-privileges"),
    ("services:\n  a:\n    image: x\nsecrets:\n  s: {file: x}\n", "secrets"),
    ("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n"
     "    depends_on: [a]\n", "cycle: a -> b -> a"),
])
def test_refused_with_the_reason(compose: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        resolve(compose)


def test_env_file_extends_and_include_are_expanded_inside_the_project(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text("# c\nA=1\nexport B='two'\n")
    (tmp_path / "base.yml").write_text("services:\n  base:\n    image: b\n"
                                       "    environment: {FROM_BASE: '1'}\n")
    (tmp_path / "more.yml").write_text("services:\n  extra:\n    image: e\n")
    doc = load_compose("include: [more.yml]\nservices:\n  a:\n    image: x\n"
                       "    env_file: app.env\n    environment: {B: mine}\n"
                       "    extends: {file: base.yml, service: base}\n", base=tmp_path)
    a = doc["services"]["a"]
    assert a["environment"] == {"FROM_BASE": "1", "A": "1", "B": "mine"}
    assert a["image"] == "x" and "extra" in doc["services"]
    with pytest.raises(InvalidInput, match="outside the project"):
        load_compose("services:\n  a:\n    image: x\n    env_file: ../../etc/passwd\n",
                     base=tmp_path)


def test_apps_json_of_supervisor_v12_is_migrated_and_v2_local_empty_body_is_taken() -> None:
    v12 = {"name": "aDevice", "config": {"RESIN_HOST_LOG_TO_DISPLAY": "0"}, "apps": {"1234": {
        "name": "superapp", "commit": "abcdef", "releaseId": 1, "services": {"23": {
            "imageId": 12345, "serviceName": "someservice",
            "image": "registry2.resin.io/superapp/abcdef",
            "labels": {"io.resin.something": "bar"}, "environment": {}}}}}}
    parsed = formats.parse_apps_json(data=v12)
    app = parsed.apps["1234"]
    assert app.id == 1234 and app.name == "superapp"
    assert app.releases["abcdef"].services["someservice"].image_id == 12345
    assert formats.parse_v2_local(data={}, device_uuid="d").device.apps == {}
