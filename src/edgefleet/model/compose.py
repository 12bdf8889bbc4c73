"""Compose service normalisation: a compose service dict → the config fields of a ServiceSpec.

Names stay app-local here (volume and network names as the user wrote them); `model.resolve`
turns them into engine names. Every problem is collected with its field path, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgefleet.model.compose_values import (
    _command,
    _expose,
    _healthcheck,
    _ports,
    _s,
    _str_list,
    _ulimits,
    key_value_map,
    parse_duration_ns,
    parse_size,
)
from edgefleet.model.errors import Problem
from edgefleet.model.features import warn_once
from edgefleet.model.naming import normalise_label_name

RESTART_VALUES = ("no", "always", "on-failure", "unless-stopped")
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
IGNORED_KEYS: dict[str, str] = {
    "build": "",
    "container_name": "balena names containers <service>_<imageId>_<releaseId>_<commit>",
    "attach": "the supervisor always collects service logs",
    "annotations": "container annotations need Engine API 1.43; edgefleet speaks 1.41",
    "post_start": "lifecycle hooks are run by docker compose, not by the engine",
    "pre_stop": "lifecycle hooks are run by docker compose, not by the engine",
    "profiles": "every service of a release runs, as on balena",
    "volumes_from": "share data through a named volume instead",
    "env_file": "read when the project is pushed; a device cannot read the file",
    "label_file": "read when the project is pushed; a device cannot read the file",
    "extends": "expanded when the project is pushed",
    "platform": "the image is pulled for the device's architecture",
    "pull_policy": "the supervisor pulls the release's images itself",
    "deploy": "swarm deployment settings; balena ignores them",
    "logging": "the supervisor collects logs through the engine's default driver",
    "scale": "balena runs one container per service",
    "develop": "docker compose watch settings",
}
"""Compose keys a device knowingly does not act on, and why (logged once when seen)."""

@dataclass
class ParsedVolume:
    """A volume entry: a named volume (app-local name), a bind or a tmpfs."""

    type: str
    source: str
    target: str
    read_only: bool = False


@dataclass
class ParsedService:
    """The normalised, app-local form of one compose service."""

    fields: dict[str, Any] = field(default_factory=dict)
    volumes: list[ParsedVolume] = field(default_factory=list)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """App-local network name → {aliases, ipv4_address, ipv6_address}."""
    network_mode: str | None = None


def _volumes(value: Any) -> list[ParsedVolume]:
    out = []
    for item in value or []:
        if isinstance(item, dict):
            kind = item.get("type", "volume")
            if kind not in ("volume", "bind", "tmpfs"):
                raise ValueError(f"unsupported volume type {kind!r}")
            out.append(
                ParsedVolume(kind, str(item.get("source", "")), str(item["target"]),
                             bool(item.get("read_only", False)))
            )
            continue
        parts = _s(item).split(":")
        if len(parts) == 1:
            raise ValueError(
                f"anonymous volume {item!r} is not supported: name it (e.g. 'data:{parts[0]}')"
                " and declare it under top-level volumes"
            )
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else "rw"
        kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        out.append(ParsedVolume(kind, source, target, "ro" in mode.split(",")))
    return out


def _networks(value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(n): {} for n in value}
    if isinstance(value, dict):
        out: dict[str, dict[str, Any]] = {}
        for name, conf in value.items():
            conf = conf or {}
            out[str(name)] = {
                "aliases": tuple(_s(a) for a in conf.get("aliases", []) or []),
                "ipv4_address": conf.get("ipv4_address"),
                "ipv6_address": conf.get("ipv6_address"),
                "link_local_ips": conf.get("link_local_ips"),
            }
        return out
    raise ValueError("expected a list or a mapping of networks")


def _depends_on(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(v): "service_started" for v in value}
    if isinstance(value, dict):
        out = {}
        for name, conf in value.items():
            cond = (conf or {}).get("condition", "service_started")
            if cond not in CONDITIONS:
                raise ValueError(f"unknown condition {cond!r} for {name!r} (use {CONDITIONS})")
            out[str(name)] = cond
        return out
    raise ValueError("expected a list or a mapping")


def _restart(value: Any) -> str:
    if value is False or value is None:
        return "no"
    text = _str(value)
    if text.startswith("on-failure:"):
        text = "on-failure"
    if text not in RESTART_VALUES:
        warn_once(f"restart {value!r} is not a restart policy ({', '.join(RESTART_VALUES)}):"
                  " using 'always', as balena does")
        return "always"
    return text


def _extra_hosts(value: Any) -> tuple[str, ...]:
    if isinstance(value, dict):
        return tuple(f"{k}:{v}" for k, v in value.items())
    return tuple(h.replace("=", ":", 1) if "=" in h else h for h in _str_list(value))


def _labels(value: Any) -> dict[str, str]:
    return {normalise_label_name(k): v for k, v in key_value_map(value).items()}


_TRUE = frozenset({"true", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "no", "n", "off", "0"})


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else ""
    if text in _TRUE or text in _FALSE:
        return text in _TRUE  # compose reads "yes", "on", 1 as true
    raise ValueError(f"expected true or false, got {value!r}")


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else _bool(value)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _str(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError(f"expected a string, got a {type(value).__name__}")
    return _s(value)


def _micros(value: Any) -> int:
    """cpu_rt_runtime / cpu_rt_period: an integer of microseconds or a duration."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return parse_duration_ns(value) // 1000


def _one_of(*allowed: str) -> Callable[[Any], str]:
    def conv(value: Any) -> str:
        text = _str(value)
        if text not in allowed:
            raise ValueError(f"{value!r} is not supported (use {' or '.join(allowed)})")
        return text
    return conv


def network_mode(value: Any) -> str:
    """`service: x` → `service:x` (balena trims the space after the colon)."""
    return re.sub(r"^(service|container):\s*", r"\1:", _str(value).strip())


# compose key → (ServiceSpec field, converter)
_SIMPLE: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "image": ("image", _str),
    "command": ("command", _command),
    "entrypoint": ("entrypoint", _command),
    "labels": ("labels", _labels),
    "ports": ("ports", _ports),
    "expose": ("expose", _expose),
    "tmpfs": ("tmpfs", _str_list),
    "privileged": ("privileged", _bool),
    "cap_add": ("cap_add", _str_list),
    "cap_drop": ("cap_drop", _str_list),
    "devices": ("devices", _str_list),
    "restart": ("restart", _restart),
    "depends_on": ("depends_on", _depends_on),
    "healthcheck": ("healthcheck", _healthcheck),
    "stop_signal": ("stop_signal", _str),
    "stop_grace_period": ("stop_grace_period_s", lambda v: parse_duration_ns(v) / 10**9),
    "user": ("user", _str),
    "working_dir": ("working_dir", _str),
    "hostname": ("hostname", _str),
    "domainname": ("domainname", _str),
    "dns": ("dns", _str_list),
    "dns_search": ("dns_search", _str_list),
    "dns_opt": ("dns_opt", _str_list),
    "extra_hosts": ("extra_hosts", _extra_hosts),
    "sysctls": ("sysctls", key_value_map),
    "ulimits": ("ulimits", _ulimits),
    "mem_limit": ("mem_limit", parse_size),
    "mem_reservation": ("mem_reservation", parse_size),
    "shm_size": ("shm_size", parse_size),
    "cpus": ("cpus", float),
    "cpu_shares": ("cpu_shares", _int),
    "cpuset": ("cpuset", _str),
    "init": ("init", _opt_bool),
    "read_only": ("read_only", _bool),
    "security_opt": ("security_opt", _str_list),
    "group_add": ("group_add", _str_list),
    "tty": ("tty", _bool),
    "stdin_open": ("stdin_open", _bool),
    "pid": ("pid", _str),
    "ipc": ("ipc", _str),
    "oom_kill_disable": ("oom_kill_disable", _opt_bool),
    "oom_score_adj": ("oom_score_adj", _int),
    "pids_limit": ("pids_limit", _int),
    "cgroup": ("cgroup", _one_of("host", "private")),
    "cpu_quota": ("cpu_quota", _int),
    "cpu_period": ("cpu_period", _int),
    "cpu_rt_runtime": ("cpu_rt_runtime", _micros),
    "cpu_rt_period": ("cpu_rt_period", _micros),
    "device_cgroup_rules": ("device_cgroup_rules", _str_list),
    "mac_address": ("mac_address", _str),
    "userns_mode": ("userns_mode", _one_of("host")),
    "uts": ("uts", _one_of("host")),
}
SUPPORTED_KEYS = frozenset(_SIMPLE) | {"environment", "volumes", "networks", "network_mode"}


def parse_service(*, composition: dict[str, Any], path: str) -> tuple[ParsedService, list[Problem]]:
    """Normalise one compose service; returns the result and every problem found (with paths)."""
    parsed = ParsedService()
    problems: list[Problem] = []
    if not isinstance(composition, dict):
        return parsed, [Problem(path, "a service must be a mapping")]
    for key, value in composition.items():
        where = f"{path}.{key}"
        try:
            if str(key).startswith("x-"):
                continue  # a compose extension field
            if key in IGNORED_KEYS:
                if IGNORED_KEYS[key]:
                    warn_once(f"compose key {key!r} ignored: {IGNORED_KEYS[key]}")
                continue
            if key in _SIMPLE:
                name, conv = _SIMPLE[key]
                if value is not None or key == "restart":
                    parsed.fields[name] = conv(value)
            elif key == "environment":
                parsed.fields["environment"] = key_value_map(value, allow_missing=True)
            elif key == "volumes":
                parsed.volumes = _volumes(value)
            elif key == "networks":
                parsed.networks = _networks(value)
            elif key == "network_mode":
                parsed.network_mode = network_mode(value)
            else:
                problems.append(Problem(where, f"unsupported compose key {key!r}"))
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
            problems.append(Problem(where, str(exc).strip("'\"") or type(exc).__name__))
    if parsed.network_mode and parsed.networks:
        problems.append(
            Problem(f"{path}.network_mode", "network_mode cannot be combined with networks")
        )
    return parsed, problems
