"""What balena's compose parser refuses, written from its code (balena-io-modules/
balena-compose-parser lib/compose.ts and lib/contracts.ts at 47fe4f15), independently of
edgefleet's implementation: the oracle for corpus inputs balena's tests do not cover."""

from __future__ import annotations

import re
from typing import Any

SERVICE_DENY = {
    "blkio_config", "configs", "cpu_count", "cpu_percent", "cpu_period", "credential_spec",
    "deploy", "develop", "external_links", "gpus", "isolation", "links", "logging",
    "mem_swappiness", "memswap_limit", "oom_kill_disable", "platform", "pull_policy",
    "runtime", "scale", "secrets", "stdin_open", "storage_opt",
}
BUILD_DENY = {"additional_contexts", "cache_to", "dockerfile_inline", "entitlements",
              "isolation", "network", "no_cache", "platforms", "privileged", "pull", "secrets",
              "ssh", "tags", "ulimits"}
ALLOWED_BINDS = {"/var/run/docker.sock", "/var/run/balena-engine.sock", "/run/dbus", "/sys",
                 "/proc", "/lib/modules", "/lib/firmware", "/var/log/journal",
                 "/run/log/journal", "/etc/machine-id"}
SECURITY = [r"^no-new-privileges([:=].*)?$", r"^apparmor[:=]unconfined$",
            r"^seccomp[:=]unconfined$"]
# the compose specification's service keys (compose-go refuses any other, as its schema does)
SPEC_KEYS = {
    "annotations", "attach", "build", "blkio_config", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
    "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus",
    "cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules",
    "devices", "dns", "dns_opt", "dns_search", "domainname", "driver_opts", "entrypoint",
    "env_file", "environment", "expose", "extends", "external_links", "extra_hosts", "gpus",
    "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "label_file",
    "labels", "links", "logging", "mac_address", "mem_limit", "mem_reservation",
    "mem_swappiness", "memswap_limit", "models", "network_mode", "networks",
    "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports",
    "post_start", "pre_stop", "privileged", "profiles", "provider", "pull_policy",
    "pull_refresh_after", "read_only", "restart", "runtime", "scale", "secrets",
    "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal",
    "storage_opt", "sysctls", "tmpfs", "tty", "ulimits", "use_api_socket", "user",
    "userns_mode", "uts", "volumes", "volumes_from", "working_dir",
}
IMPLEMENTED = {"service.stdin_open", "service.oom_kill_disable", "service.cpu_period",
               "network.enable_ipv6", "network.aux_addresses"}
"""What balena refuses but edgefleet implements (accepting these is not a difference)."""


def _volume(v: Any, declared: set[str]) -> list[str]:
    if isinstance(v, str):
        parts = v.split(":")
        first = parts[0] if len(parts) > 1 else ""
        kind = "bind" if first.startswith(("/", ".", "~")) else "volume"
        v = {"type": kind, "source": first, "target": parts[-1]}
    if not isinstance(v, dict):
        return ["service.volumes invalid"]
    source = v.get("source")
    if source in ALLOWED_BINDS:
        return []
    kind = v.get("type", "volume")
    if kind in ("bind", "image", "npipe", "cluster"):
        return [f"service.volumes type {kind}"]
    if (kind == "tmpfs" and v.get("tmpfs")) or (kind == "volume" and v.get("volume")):
        return ["long syntax service.volumes"]
    if kind == "volume" and (not source or not v.get("target")):
        return ["service.volumes must specify source and target"]
    if kind == "volume" and source not in declared:
        return ["service.volumes not declared"]
    return []


def refusals(doc: Any) -> list[str]:
    """Why balena refuses this (expanded) compose document; [] when it accepts it."""
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        return ["not a composition"]
    out: list[str] = []
    if "secrets" in doc or "configs" in doc:
        out.append("top-level secrets/configs")
    volumes = doc.get("volumes") or {}
    declared = set(volumes) if isinstance(volumes, dict) else set()
    for svc in doc["services"].values():
        if not isinstance(svc, dict):
            out.append("service not a mapping")
            continue
        out += [f"service.{k}" for k in SERVICE_DENY if k in svc]
        out += [f"unknown key {k}" for k in svc
                if k not in SPEC_KEYS and not str(k).startswith("x-")]
        build = svc.get("build")
        if isinstance(build, dict):
            out += [f"service.build.{k}" for k in BUILD_DENY if k in build]
        for key in ("network_mode", "pid"):
            if str(svc.get(key, "")).startswith("container:"):
                out.append(f"service.{key} container")
        if str(svc.get("ipc", "")).strip().startswith("service:"):
            out.append("service.ipc service")
        for opt in svc.get("security_opt") or []:
            if not any(re.match(r, str(opt)) for r in SECURITY):
                out.append("service.security_opt")
        for v in svc.get("volumes_from") or []:
            if str(v).startswith("container:"):
                out.append("service.volumes_from container")
        nets = svc.get("networks")
        if isinstance(nets, dict) and any(isinstance(n, dict) and n.get("link_local_ips")
                                          for n in nets.values()):
            out.append("service.network.link_local_ips")
        if isinstance(svc.get("pids_limit"), int) and svc["pids_limit"] < 0:
            out.append("negative pids_limit")
        for v in svc.get("volumes") or []:
            out += _volume(v, declared)
        for key, value in (svc.get("labels") or {}).items() \
                if isinstance(svc.get("labels"), dict) else []:
            if key == "io.balena.features.requires.arch.sw" and value not in (
                    "aarch64", "rpi", "amd64", "armv7hf", "i386"):
                out.append("contract arch.sw")
    for net in (doc.get("networks") or {}).values():
        if not isinstance(net, dict):
            continue
        out += [f"network.{k}" for k in ("attachable", "external") if k in net]
        if net.get("driver") not in (None, "bridge", "default"):
            out.append("network.driver")
        if any(isinstance(c, dict) and c.get("aux_addresses")
               for c in (net.get("ipam") or {}).get("config") or []):
            out.append("network.aux_addresses")
        if "enable_ipv4" in net:
            out.append("network.enable_ipv4")
        if net.get("enable_ipv6"):
            out.append("network.enable_ipv6")
    for vol in volumes.values() if isinstance(volumes, dict) else []:
        if isinstance(vol, dict):
            if "external" in vol:
                out.append("volume.external")
            if vol.get("driver") not in (None, "local", "default"):
                out.append("volume.driver")
    return out
