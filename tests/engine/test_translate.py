"""ServiceSpec → create body: each field lands where the engine expects it."""

from __future__ import annotations

import pytest

from edgefleet.engine import translate
from edgefleet.model import naming
from edgefleet.model.errors import InvalidInput
from edgefleet.model.service import (
    Healthcheck,
    IpamConfig,
    Mount,
    NetworkAttachment,
    NetworkSpec,
    PortBinding,
    ServiceSpec,
    Ulimit,
    VolumeSpec,
)


def spec(**kw: object) -> ServiceSpec:
    return ServiceSpec(app_id=1, app_uuid="u", service_name="web", image="img:1", **kw)


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


def test_every_remaining_field_lands_in_its_place() -> None:
    s = spec(
        entrypoint=("/init",), environment={"B": "2", "A": "1"}, labels={"x": "y"},
        tmpfs=("/run:size=1m", "/cache"), cap_add=("NET_ADMIN",), cap_drop=("MKNOD",),
        dns=("127.0.0.1",), dns_search=("lan",), dns_opt=("ndots:1",),
        extra_hosts=("db:127.0.0.2",), sysctls={"net.core.somaxconn": "1024"},
        mem_reservation=512, cpu_shares=256, cpuset="0", shm_size=64, init=True,
        read_only=True, security_opt=("no-new-privileges",), group_add=("dialout",),
        pid="host", ipc="host", oom_kill_disable=True, oom_score_adj=-500, tty=True,
        stdin_open=True, hostname="h", domainname="d", working_dir="/w",
        stop_signal="SIGINT", restart="unless-stopped",
        mounts=(Mount(type="tmpfs", target="/scratch"),))
    body = translate.create_body(spec=s)
    host = body["HostConfig"]
    assert body["Entrypoint"] == ["/init"]
    assert body["Env"] == ["A=1", "B=2"]
    assert body["Labels"]["x"] == "y"
    assert (body["Tty"], body["OpenStdin"]) == (True, True)
    assert (body["Hostname"], body["Domainname"], body["WorkingDir"]) == ("h", "d", "/w")
    assert body["StopSignal"] == "SIGINT"
    assert host["Tmpfs"] == {"/run": "size=1m", "/cache": ""}
    assert host["Mounts"] == [{"Type": "tmpfs", "Target": "/scratch"}]
    assert (host["CapAdd"], host["CapDrop"]) == (["NET_ADMIN"], ["MKNOD"])
    assert (host["Dns"], host["DnsSearch"], host["DnsOptions"]) == (
        ["127.0.0.1"], ["lan"], ["ndots:1"])
    assert host["ExtraHosts"] == ["db:127.0.0.2"]
    assert host["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert host["RestartPolicy"] == {"Name": "unless-stopped"}
    assert (host["MemoryReservation"], host["CpuShares"], host["CpusetCpus"]) == (512, 256, "0")
    assert (host["ShmSize"], host["Init"], host["ReadonlyRootfs"]) == (64, True, True)
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["GroupAdd"] == ["dialout"]
    assert (host["PidMode"], host["IpcMode"]) == ("host", "host")
    assert (host["OomKillDisable"], host["OomScoreAdj"]) == (True, -500)


def test_unset_optional_fields_are_left_to_the_engine() -> None:
    body = translate.create_body(spec=spec())
    for key in ("Cmd", "Entrypoint", "User", "Hostname", "StopSignal", "Healthcheck"):
        assert key not in body
    for key in ("Memory", "NanoCpus", "Init", "PidMode", "OomScoreAdj"):
        assert key not in body["HostConfig"]
    assert body["HostConfig"]["NetworkMode"] == "default"
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "always"}
    assert body["StopTimeout"] == 10


def test_devices_default_to_same_path_and_rwm() -> None:
    host = translate.create_body(spec=spec(devices=("/dev/i2c-1", "/dev/a:/dev/b:r")))
    assert host["HostConfig"]["Devices"] == [
        {"PathOnHost": "/dev/i2c-1", "PathInContainer": "/dev/i2c-1", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/a", "PathInContainer": "/dev/b", "CgroupPermissions": "r"}]


def test_service_network_mode_without_a_resolver_is_refused() -> None:
    with pytest.raises(InvalidInput, match="network_mode: service:db"):
        translate.create_body(spec=spec(network_mode="service:db"))


def test_network_and_volume_bodies_carry_ownership_labels() -> None:
    net = NetworkSpec(app_uuid="u", app_id=1, name="default", internal=True,
                      ipam_config=(IpamConfig(subnet="10.9.0.0/24", gateway="10.9.0.1"),))
    body = translate.network_body(spec=net, scope="s")
    assert body["Name"] == "u_default" and body["Internal"] is True
    assert body["IPAM"]["Config"] == [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]
    labels = body["Labels"]
    assert labels[naming.SUPERVISED] == "true" and labels[naming.APP_UUID] == "u"
    assert labels[naming.SCOPE] == "s"
    assert labels[naming.CONFIG_HASH] == translate.network_hash(net)
    changed = net.model_copy(update={"internal": False})
    assert translate.network_hash(changed) != translate.network_hash(net)
    vol = translate.volume_body(spec=VolumeSpec(app_uuid="u", app_id=1, name="data"), scope="s")
    assert vol["Name"] == "1_data"
    assert vol["Labels"][naming.SCOPE] == "s" and vol["Labels"][naming.SUPERVISED] == "true"
