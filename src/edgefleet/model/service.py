"""Fully resolved desired objects: what the planner compares with the engine.

A `ServiceSpec` maps one-to-one onto a container create request: every name in it is already the
engine-level name (volumes `<appId>_<name>`, networks `<appUuid>_<name>`), every default applied,
every injected environment variable present. Compose parsing produces it (`model.compose`), target
resolution assembles it (`model.resolve`); the engine adapter translates it (`engine.translate`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

RestartPolicy = Literal["no", "always", "on-failure", "unless-stopped"]
DependsCondition = Literal[
    "service_started", "service_healthy", "service_completed_successfully"
]
UpdateStrategy = Literal[
    "download-then-kill", "kill-then-download", "delete-then-download", "hand-over"
]

# Environment variables whose value changes when edgefleet or the host OS is upgraded. They are
# injected but never hashed, so upgrades never recreate containers (compat §8 pain point).
UNHASHED_ENV = frozenset(
    {
        "BALENA_SUPERVISOR_VERSION",
        "RESIN_SUPERVISOR_VERSION",
        "BALENA_HOST_OS_VERSION",
        "RESIN_HOST_OS_VERSION",
        "BALENA_SUPERVISOR_API_KEY",
        "RESIN_SUPERVISOR_API_KEY",
    }
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PortBinding(_Frozen):
    """One published port (ranges are expanded into one binding per port)."""

    container_port: int
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    host_ip: str = ""
    host_port: int | None = None
    host_port_end: int | None = None
    """A host port range for one container port (`8000-9000:80`): the engine picks one."""


class Mount(_Frozen):
    """A mount: a named volume (engine name), a granted bind, or a tmpfs."""

    type: Literal["volume", "bind", "tmpfs"]
    source: str = ""
    target: str
    read_only: bool = False
    injected: bool = False
    """Added by edgefleet (lock dir, feature grant), not written by the user: never hashed."""


class NetworkAttachment(_Frozen):
    """How a service joins one network."""

    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    ipv6_address: str | None = None


class Healthcheck(_Frozen):
    """A container healthcheck; durations in nanoseconds as the engine takes them."""

    test: tuple[str, ...] = ()
    interval_ns: int | None = None
    timeout_ns: int | None = None
    retries: int | None = None
    start_period_ns: int | None = None
    disable: bool = False


class Ulimit(_Frozen):
    """One ulimit."""

    name: str
    soft: int
    hard: int


class ServiceSpec(_Frozen):
    """One service of one release, resolved to exactly what the container should be."""

    # identity: decides the container's name and ownership, never hashed
    app_id: int
    app_uuid: str
    app_name: str = ""
    service_name: str
    service_id: int = 0
    image_id: int = 0
    release_id: int = 0
    commit: str = ""
    running: bool = True
    # container configuration: hashed
    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    ports: tuple[PortBinding, ...] = ()
    expose: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    tmpfs: tuple[str, ...] = ()
    networks: dict[str, NetworkAttachment] = Field(default_factory=dict)
    network_mode: str = ""
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    restart: RestartPolicy = "always"
    depends_on: dict[str, DependsCondition] = Field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    stop_signal: str | None = None
    stop_grace_period_s: float = 10.0
    user: str | None = None
    working_dir: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    sysctls: dict[str, str] = Field(default_factory=dict)
    ulimits: tuple[Ulimit, ...] = ()
    mem_limit: int | None = None
    mem_reservation: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset: str | None = None
    shm_size: int | None = None
    init: bool | None = None
    read_only: bool = False
    security_opt: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    tty: bool = False
    stdin_open: bool = False
    pid: str | None = None
    ipc: str | None = None
    oom_kill_disable: bool | None = None
    oom_score_adj: int | None = None
    # added after hash version 1 (each must default to "not set")
    pids_limit: int | None = None
    cgroup: str | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_rt_runtime: int | None = None
    cpu_rt_period: int | None = None
    device_cgroup_rules: tuple[str, ...] = ()
    mac_address: str | None = None
    userns_mode: str | None = None
    uts: str | None = None
    # bookkeeping for the hash, never hashed and never sent to the engine
    injected_env: frozenset[str] = frozenset()
    """Environment keys edgefleet injected (not set by the user): left out of the hash."""
    legacy_hash: str = ""
    """The hash edgefleet's hash version 1 gave this service ("" when version 1 could not
    express it): a container labelled with it is kept (`hash_matches`)."""

    @property
    def container_name(self) -> str:
        """The engine name `<serviceName>_<imageId>_<releaseId>_<commit>`."""
        from edgefleet.model.naming import container_name

        return container_name(
            service_name=self.service_name,
            image_id=self.image_id,
            release_id=self.release_id,
            commit=self.commit,
        )

    @property
    def update_strategy(self) -> UpdateStrategy:
        """The update strategy chosen by label (default download-then-kill)."""
        from edgefleet.model.naming import UPDATE_STRATEGY

        value = self.labels.get(UPDATE_STRATEGY, "download-then-kill")
        if value in ("download-then-kill", "kill-then-download", "delete-then-download",
                     "hand-over"):
            return value  # type: ignore[return-value]
        return "download-then-kill"

    @property
    def handover_timeout_ms(self) -> int:
        """`io.balena.update.handover-timeout` in ms (default 60000)."""
        from edgefleet.model.naming import HANDOVER_TIMEOUT

        raw = self.labels.get(HANDOVER_TIMEOUT, "60000")
        return int(raw) if raw.isdigit() else 60000

    _hash: str | None = PrivateAttr(default=None)

    def config_hash(self) -> str:
        """The `io.edgefleet.config-hash` label: `2:` + hash of what the user set (computed
        once; see `model.confighash`)."""
        if self._hash is None:
            from edgefleet.model.confighash import config_hash_v2

            self._hash = config_hash_v2(self)
        return self._hash

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> ServiceSpec:
        """A copy; its hash is computed afresh (the cached one may no longer apply)."""
        copy = super().model_copy(update=update, deep=deep)
        copy._hash = None
        return copy

    def hash_matches(self, label: str) -> bool:
        """Whether a container labelled `label` has this configuration: the current hash, or
        the version-1 hash of the same service (containers made before hash version 2)."""
        return label == self.config_hash() or (bool(self.legacy_hash) and
                                               label == self.legacy_hash)


class IpamConfig(_Frozen):
    """One IPAM pool of a network."""

    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict[str, str] = Field(default_factory=dict)


class NetworkSpec(_Frozen):
    """A network of an app; `engine_name` is `<appUuid>_<name>`."""

    app_uuid: str
    app_id: int
    name: str
    driver: str = "bridge"
    driver_opts: dict[str, str] = Field(default_factory=dict)
    ipam_driver: str = "default"
    ipam_config: tuple[IpamConfig, ...] = ()
    ipam_options: dict[str, str] = Field(default_factory=dict)
    enable_ipv6: bool = False
    internal: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    config_only: bool = False

    @property
    def engine_name(self) -> str:
        from edgefleet.model.naming import network_name

        return network_name(app_uuid=self.app_uuid, name=self.name)

    def config_hash(self) -> str:
        """Hash of the network's user-set config (label `io.edgefleet.config-hash`): a network
        whose hash changed is recreated."""
        data = self.model_dump(mode="json", exclude={"app_id"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


class VolumeSpec(_Frozen):
    """A named volume of an app; `engine_name` is `<appId>_<name>`."""

    app_uuid: str
    app_id: int
    name: str
    driver: str = "local"
    driver_opts: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def engine_name(self) -> str:
        from edgefleet.model.naming import volume_name

        return volume_name(app_id=self.app_id, name=self.name)


class AppSpec(_Frozen):
    """One app as it should run: its release's services, networks and volumes."""

    app_uuid: str
    app_id: int
    name: str = ""
    app_class: Literal["fleet", "app", "block"] = "fleet"
    is_host: bool = False
    commit: str | None = None
    release_id: int | None = None
    services: dict[str, ServiceSpec] = Field(default_factory=dict)
    networks: dict[str, NetworkSpec] = Field(default_factory=dict)
    volumes: dict[str, VolumeSpec] = Field(default_factory=dict)


class DesiredState(_Frozen):
    """Every app the device should run, keyed by app uuid."""

    apps: dict[str, AppSpec] = Field(default_factory=dict)
