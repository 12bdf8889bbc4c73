"""ServiceSpec / NetworkSpec → Docker Engine API request bodies (API v1.41). Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgefleet.model import naming
from edgefleet.model.errors import InvalidInput, Problem
from edgefleet.model.features import truthy
from edgefleet.model.service import NetworkSpec, ServiceSpec, VolumeSpec

# balena's gpu feature: one GPU, as `docker run --gpus 1` asks for it
_GPU = [{"Driver": "", "Count": 1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}]


def _port_key(port: int, proto: str) -> str:
    return f"{port}/{proto}"


def _devices(devices: tuple[str, ...]) -> list[dict[str, str]]:
    out = []
    for dev in devices:
        parts = dev.split(":")
        host = parts[0]
        cont = parts[1] if len(parts) > 1 else host
        perm = parts[2] if len(parts) > 2 else "rwm"
        out.append({"PathOnHost": host, "PathInContainer": cont, "CgroupPermissions": perm})
    return out


def _network_mode(spec: ServiceSpec, resolve: Callable[[str], str] | None,
                  mode: str | None = None) -> str:
    mode = mode if mode is not None else (spec.network_mode or "default")
    if mode.startswith("service:"):
        if resolve is None:
            raise InvalidInput(f"service {spec.service_name}", [Problem(
                "network_mode", f"{mode} needs the id of that service's container: create "
                "it first and pass resolve_service_container")])
        return f"container:{resolve(mode[len('service:'):])}"
    return mode


def create_body(
    *, spec: ServiceSpec, resolve_service_container: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """The `POST /containers/create` body for a service; networks beyond the first are
    connected separately (see `extra_networks`)."""
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in spec.ports:
        key = _port_key(p.container_port, p.protocol)
        exposed[key] = {}
        bindings.setdefault(key, []).append(
            {"HostIp": p.host_ip, "HostPort": (f"{p.host_port}-{p.host_port_end}"
                                               if p.host_port_end else str(p.host_port or ""))}
        )
    for e in spec.expose:
        exposed[e] = {}
    mounts: list[dict[str, Any]] = []
    for m in spec.mounts:
        if m.type == "tmpfs":
            mounts.append({"Type": "tmpfs", "Target": m.target})
        else:
            mounts.append(
                {"Type": m.type, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
            )
    mode = _network_mode(spec, resolve_service_container)
    host: dict[str, Any] = {
        "NetworkMode": mode,
        "PortBindings": bindings,
        "Mounts": mounts,
        "Tmpfs": {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "")
                  for t in spec.tmpfs},
        "Privileged": spec.privileged,
        "CapAdd": list(spec.cap_add),
        "CapDrop": list(spec.cap_drop),
        "Devices": _devices(spec.devices),
        "RestartPolicy": {"Name": "" if spec.restart == "no" else spec.restart},
        "Dns": list(spec.dns),
        "DnsSearch": list(spec.dns_search),
        "DnsOptions": list(spec.dns_opt),
        "ExtraHosts": list(spec.extra_hosts),
        "Sysctls": dict(spec.sysctls),
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits],
        "ReadonlyRootfs": spec.read_only,
        "SecurityOpt": list(spec.security_opt),
        "GroupAdd": list(spec.group_add),
    }
    optional_host = {
        "Memory": spec.mem_limit, "MemoryReservation": spec.mem_reservation,
        "NanoCpus": int(spec.cpus * 1e9) if spec.cpus else None,
        "CpuShares": spec.cpu_shares, "CpusetCpus": spec.cpuset, "ShmSize": spec.shm_size,
        "Init": spec.init, "IpcMode": spec.ipc,
        "PidMode": _network_mode(spec, resolve_service_container, spec.pid) if spec.pid
        else None,
        "OomKillDisable": spec.oom_kill_disable, "OomScoreAdj": spec.oom_score_adj,
        "PidsLimit": spec.pids_limit, "CgroupnsMode": spec.cgroup, "CpuQuota": spec.cpu_quota,
        "CpuPeriod": spec.cpu_period, "CpuRealtimeRuntime": spec.cpu_rt_runtime,
        "CpuRealtimePeriod": spec.cpu_rt_period, "UsernsMode": spec.userns_mode,
        "UTSMode": spec.uts,
        "DeviceCgroupRules": list(spec.device_cgroup_rules) or None,
        "DeviceRequests": _GPU if truthy(spec.labels.get(f"{naming.FEATURE_PREFIX}gpu", ""))
        else None,
    }
    host.update({k: v for k, v in optional_host.items() if v is not None})
    body: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{k}={v}" for k, v in sorted(spec.environment.items())],
        "Labels": {**spec.labels, naming.CONFIG_HASH: spec.config_hash()},
        "ExposedPorts": exposed,
        "Tty": spec.tty,
        "OpenStdin": spec.stdin_open,
        "StopTimeout": int(spec.stop_grace_period_s),
        "HostConfig": host,
    }
    optional = {
        "Cmd": list(spec.command) if spec.command is not None else None,
        "Entrypoint": list(spec.entrypoint) if spec.entrypoint is not None else None,
        "Hostname": spec.hostname, "Domainname": spec.domainname, "User": spec.user,
        "WorkingDir": spec.working_dir, "StopSignal": spec.stop_signal,
        "MacAddress": spec.mac_address,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if spec.healthcheck is not None:
        hc = spec.healthcheck
        check: dict[str, Any] = {"Test": list(hc.test)}
        for key, value in (("Interval", hc.interval_ns), ("Timeout", hc.timeout_ns),
                           ("Retries", hc.retries), ("StartPeriod", hc.start_period_ns)):
            if value is not None:
                check[key] = value
        body["Healthcheck"] = check
    first = next(iter(spec.networks.items()), None)
    if first is not None and mode == first[0]:
        body["NetworkingConfig"] = {"EndpointsConfig": {first[0]: endpoint(first[1])}}
    return body


def endpoint(att: Any) -> dict[str, Any]:
    """EndpointsConfig entry for a NetworkAttachment."""
    conf: dict[str, Any] = {"Aliases": list(att.aliases)}
    ipam = {k: v for k, v in (("IPv4Address", att.ipv4_address),
                              ("IPv6Address", att.ipv6_address)) if v}
    if ipam:
        conf["IPAMConfig"] = ipam
    return conf


def extra_networks(spec: ServiceSpec) -> list[tuple[str, dict[str, Any]]]:
    """(network engine name, EndpointConfig) for every network after the first."""
    items = list(spec.networks.items())
    return [(name, endpoint(att)) for name, att in items[1:]]


def network_hash(spec: NetworkSpec) -> str:
    """Hash of a network's user-set config: a changed network is recreated."""
    return spec.config_hash()


def network_body(*, spec: NetworkSpec, scope: str) -> dict[str, Any]:
    """The `POST /networks/create` body."""
    ipam: dict[str, Any] = {"Driver": spec.ipam_driver, "Options": spec.ipam_options}
    pools = []
    for pool in spec.ipam_config:
        pairs = (("Subnet", pool.subnet), ("IPRange", pool.ip_range), ("Gateway", pool.gateway))
        entry: dict[str, Any] = {k: v for k, v in pairs if v}
        if pool.aux_addresses:
            entry["AuxiliaryAddresses"] = pool.aux_addresses
        pools.append(entry)
    if pools:
        ipam["Config"] = pools
    return {
        "Name": spec.engine_name, "CheckDuplicate": True, "Driver": spec.driver,
        "Options": spec.driver_opts, "IPAM": ipam, "EnableIPv6": spec.enable_ipv6,
        "Internal": spec.internal, "ConfigOnly": spec.config_only,
        "Labels": {**spec.labels, naming.SUPERVISED: "true", naming.APP_UUID: spec.app_uuid,
                   naming.APP_ID: str(spec.app_id), naming.SCOPE: scope,
                   naming.CONFIG_HASH: network_hash(spec)},
    }


def volume_body(*, spec: VolumeSpec, scope: str) -> dict[str, Any]:
    """The `POST /volumes/create` body."""
    return {
        "Name": spec.engine_name, "Driver": spec.driver, "DriverOpts": spec.driver_opts,
        "Labels": {**spec.labels, naming.SUPERVISED: "true", naming.APP_UUID: spec.app_uuid,
                   naming.APP_ID: str(spec.app_id), naming.SCOPE: scope},
    }
