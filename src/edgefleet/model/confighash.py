"""The service config hash (label `io.edgefleet.config-hash`): decides "keep or recreate".

Version 2 (`2:<hex>`) is an explicit function of what the user set:
- an allowlist of fields (`HASHED`); a field added to `ServiceSpec` later is not hashed until
  it is added here, and fields are dumped with `exclude_defaults`, so a new field left unset
  never changes a hash;
- the environment and mounts edgefleet injects (lock dir, feature grants, device facts) are
  left out: an edgefleet or host OS upgrade that injects something new recreates nothing;
- lists balena compares as sets (ports, volumes, cap_add, ...) are sorted first.

Version 1 (32 hex digits, no prefix) was the whole model dump minus a denylist; containers
made by edgefleet before version 2 carry it. `config_hash_v1` recomputes it for a service as the
earlier code would have resolved it (`model.resolve` passes that view), so an upgrade with the
same target keeps those containers (`ServiceSpec.hash_matches`).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from edgefleet.model import naming

if TYPE_CHECKING:
    from edgefleet.model.service import Mount, ServiceSpec

HASH_VERSION = 2

HASHED = frozenset({
    "image", "command", "entrypoint", "environment", "labels", "ports", "expose", "mounts",
    "tmpfs", "networks", "network_mode", "privileged", "cap_add", "cap_drop", "devices",
    "restart", "depends_on", "healthcheck", "stop_signal", "stop_grace_period_s", "user",
    "working_dir", "hostname", "domainname", "dns", "dns_search", "dns_opt", "extra_hosts",
    "sysctls", "ulimits", "mem_limit", "mem_reservation", "cpus", "cpu_shares", "cpuset",
    "shm_size", "init", "read_only", "security_opt", "group_add", "tty", "stdin_open", "pid",
    "ipc", "oom_kill_disable", "oom_score_adj", "pids_limit", "cgroup", "cpu_quota",
    "cpu_period", "cpu_rt_runtime", "cpu_rt_period", "device_cgroup_rules", "mac_address",
    "userns_mode", "uts",
})
"""Every `ServiceSpec` field that is hashed; `NOT_HASHED` lists the others (a test checks
that each field is in exactly one)."""
NOT_HASHED = frozenset({
    "app_id", "app_uuid", "app_name", "service_name", "service_id", "image_id", "release_id",
    "commit", "running", "injected_env", "legacy_hash",
})
ORDERLESS = ("ports", "expose", "mounts", "tmpfs", "cap_add", "cap_drop", "devices", "dns",
             "extra_hosts", "group_add", "security_opt", "device_cgroup_rules")
SUPERVISOR_LABELS = frozenset({naming.SUPERVISED, naming.APP_ID, naming.APP_UUID,
                               naming.SERVICE_ID, naming.SERVICE_NAME, naming.SCOPE})
UNHASHED_ENV = frozenset({
    "BALENA_SUPERVISOR_VERSION", "RESIN_SUPERVISOR_VERSION", "BALENA_HOST_OS_VERSION",
    "RESIN_HOST_OS_VERSION", "BALENA_SUPERVISOR_API_KEY", "RESIN_SUPERVISOR_API_KEY",
})


def _digest(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _sorted(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))


def config_hash_v2(spec: ServiceSpec) -> str:
    """`2:` + the version-2 hash of a service."""
    data = spec.model_dump(mode="json", include=set(HASHED), exclude_defaults=True)
    env = {k: v for k, v in spec.environment.items()
           if k not in spec.injected_env and k not in UNHASHED_ENV}
    labels = {k: v for k, v in spec.labels.items() if k not in SUPERVISOR_LABELS}
    data["environment"] = env
    data["labels"] = labels
    data["mounts"] = [m.model_dump(mode="json", exclude_defaults=True, exclude={"injected"})
                      for m in spec.mounts if not m.injected]
    for key in ORDERLESS:
        if key in data:
            data[key] = _sorted(data[key])
    data = {k: v for k, v in data.items() if v not in ({}, [])}
    return f"{HASH_VERSION}:{_digest(data)}"


# The fields of ServiceSpec when hash version 1 was current, and the defaults of the fields
# added since (a service that sets one of those could not have been made by version 1).
V1_FIELDS = (
    "app_uuid", "service_name", "image", "command", "entrypoint", "environment", "labels",
    "ports", "expose", "mounts", "tmpfs", "networks", "network_mode", "privileged", "cap_add",
    "cap_drop", "devices", "restart", "depends_on", "healthcheck", "stop_signal",
    "stop_grace_period_s", "user", "working_dir", "hostname", "domainname", "dns",
    "dns_search", "dns_opt", "extra_hosts", "sysctls", "ulimits", "mem_limit",
    "mem_reservation", "cpus", "cpu_shares", "cpuset", "shm_size", "init", "read_only",
    "security_opt", "group_add", "tty", "stdin_open", "pid", "ipc", "oom_kill_disable",
    "oom_score_adj", "app_id",
)
V2_ONLY_ENV = frozenset({"RESIN_APP_LOCK_PATH", "RESIN_SERVICE_KILL_ME_PATH", "USER"})


def config_hash_v1(spec: ServiceSpec, *, environment: dict[str, str], mounts: list[Mount],
                   tty: bool, ports: list[Any]) -> str:
    """The version-1 hash of `spec` as version-1 code resolved it: `environment`, `mounts`,
    `tty` and `ports` are what that code produced; "" when it could not express `spec`."""
    added = set(type(spec).model_fields) - set(V1_FIELDS) - NOT_HASHED
    for name in added:
        if getattr(spec, name) != type(spec).model_fields[name].default:
            return ""
    data = spec.model_dump(mode="json", include=set(V1_FIELDS))
    data["environment"] = {k: v for k, v in sorted(environment.items())
                           if k not in UNHASHED_ENV}
    data["mounts"] = [m.model_dump(mode="json", exclude={"injected"}) for m in mounts]
    data["tty"] = tty
    data["ports"] = ports
    return _digest(data)
