"""ServiceSpec → create body: each field lands where the engine expects it."""

from __future__ import annotations

from edgefleet.engine import translate
from edgefleet.model import naming
from edgefleet.model.service import (
    Healthcheck,
    Mount,
    NetworkAttachment,
    PortBinding,
    ServiceSpec,
    Ulimit,
)


def spec(**kw: object) -> ServiceSpec:
    return ServiceSpec(app_id=1, app_uuid="u", service_name="web", image="img:1", **kw)  # type: ignore[arg-type]


def test_ports_mounts_restart_and_limits() -> None:
    s = spec(
        ports=(PortBinding(container_port=80, host_port=8080, host_ip="127.0.0.1"),),
        expose=("1234/tcp",),
        mounts=(Mount(type="volume", source="1_data", target="/data"),
                Mount(type="bind", source="/run/dbus", target="/host/run/dbus", read_only=True)),
        restart="no", cpus=0.5, mem_limit=1024, devices=("/dev/ttyUSB0:/dev/ttyS0",),
        ulimits=(Ulimit(name="nofile", soft=1, hard=2),), privileged=True,
        healthcheck=Healthcheck(test=("CMD-SHELL", "true"), interval_ns=10**9, retries=3),
        command=("sh", "-c", "x"), user="1000", stop_grace_period_s=30)
    body = translate.create_body(spec=s)
    host = body["HostConfig"]
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert set(body["ExposedPorts"]) == {"80/tcp", "1234/tcp"}
    assert host["Mounts"][1] == {"Type": "bind", "Source": "/run/dbus",
                                 "Target": "/host/run/dbus", "ReadOnly": True}
    assert host["RestartPolicy"] == {"Name": ""}
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 1024
    assert host["Devices"] == [{"PathOnHost": "/dev/ttyUSB0", "PathInContainer": "/dev/ttyS0",
                                "CgroupPermissions": "rwm"}]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1, "Hard": 2}]
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 10**9,
                                   "Retries": 3}
    assert body["Cmd"] == ["sh", "-c", "x"] and body["User"] == "1000"
    assert body["StopTimeout"] == 30
    assert body["Labels"][naming.CONFIG_HASH] == s.config_hash()


def test_networks_first_at_create_others_connected_after() -> None:
    s = spec(network_mode="u_a", networks={
        "u_a": NetworkAttachment(aliases=("web",), ipv4_address="10.0.0.5"),
        "u_b": NetworkAttachment(aliases=("web", "www"))})
    body = translate.create_body(spec=s)
    assert body["HostConfig"]["NetworkMode"] == "u_a"
    assert body["NetworkingConfig"]["EndpointsConfig"] == {"u_a": {
        "Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.0.0.5"}}}
    assert translate.extra_networks(s) == [("u_b", {"Aliases": ["web", "www"]})]


def test_service_network_mode_resolves_to_the_other_container() -> None:
    body = translate.create_body(spec=spec(network_mode="service:db"),
                                 resolve_service_container=lambda name: f"id-of-{name}")
    assert body["HostConfig"]["NetworkMode"] == "container:id-of-db"


def test_config_hash_label_changes_with_the_spec() -> None:
    a = translate.create_body(spec=spec(environment={"A": "1"}))["Labels"][naming.CONFIG_HASH]
    b = translate.create_body(spec=spec(environment={"A": "2"}))["Labels"][naming.CONFIG_HASH]
    assert a != b
