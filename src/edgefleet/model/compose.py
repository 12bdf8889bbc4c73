"""Compose service normalisation: a compose service dict → the config fields of a ServiceSpec.

Names stay app-local here (volume and network names as the user wrote them); `model.resolve`
turns them into engine names. Every problem is collected with its field path, never dropped.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgefleet.model.errors import Problem
from edgefleet.model.naming import normalise_label_name
from edgefleet.model.service import Healthcheck, PortBinding, Ulimit

RESTART_VALUES = ("no", "always", "on-failure", "unless-stopped")
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
IGNORED_KEYS = frozenset({"build"})

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


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


def _s(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def parse_duration_ns(value: Any) -> int:
    """`1m30s`, `10s`, `500ms`, or a number of seconds → nanoseconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return int(value * 10**9)
    text = str(value).strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (use e.g. 10s, 1m30s, 500ms)")
    return int(total)


def parse_size(value: Any) -> int:
    """`512m`, `1g`, `1024`, `100kb` → bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value).strip())
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 512m, 1g)")
    return int(float(m.group(1)) * _SIZE_MULT[m.group(2).lower()])


def _str_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int | float):
        return (_s(value),)
    if isinstance(value, list):
        return tuple(_s(v) for v in value)
    raise ValueError(f"expected a string or a list, got {type(value).__name__}")


def _command(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list):
        return tuple(_s(v) for v in value)
    raise ValueError("expected a string or a list of strings")


def key_value_map(value: Any, *, allow_missing: bool = False) -> dict[str, str]:
    """A compose map given as a mapping or as a list of `K=V` (or `K:V` for extra_hosts)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): _s(v) for k, v in value.items() if not (v is None and allow_missing)}
    if isinstance(value, list):
        out: dict[str, str] = {}
        for item in value:
            text = _s(item)
            if "=" in text:
                k, v = text.split("=", 1)
                out[k] = v
            elif allow_missing:
                continue
            else:
                out[text] = ""
        return out
    raise ValueError(f"expected a mapping or a list, got {type(value).__name__}")


def _ports(value: Any) -> tuple[PortBinding, ...]:
    out: list[PortBinding] = []
    for item in value or []:
        if isinstance(item, dict):
            out.append(
                PortBinding(
                    container_port=int(item["target"]),
                    protocol=item.get("protocol", "tcp"),
                    host_ip=str(item.get("host_ip", "")),
                    host_port=int(item["published"]) if item.get("published") else None,
                )
            )
            continue
        text = _s(item)
        proto = "tcp"
        if "/" in text:
            text, proto = text.rsplit("/", 1)
        if proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"bad protocol {proto!r} in port {item!r}")
        parts = text.rsplit(":", 2) if text.count(":") <= 2 else []
        if not parts:
            raise ValueError(f"bad port {item!r}")
        host_ip, host, cont = ("", "", parts[0])
        if len(parts) == 2:
            host, cont = parts
        elif len(parts) == 3:
            host_ip, host, cont = parts
        c_lo, c_hi = _range(cont, item)
        if host:
            h_lo, h_hi = _range(host, item)
            if h_hi - h_lo != c_hi - c_lo:
                raise ValueError(f"port ranges of different length in {item!r}")
        for i in range(c_hi - c_lo + 1):
            out.append(
                PortBinding(
                    container_port=c_lo + i,
                    protocol=proto,
                    host_ip=host_ip,
                    host_port=(h_lo + i) if host else None,
                )
            )
    return tuple(out)


def _range(text: str, item: Any) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        raise ValueError(f"bad port {item!r}")
    a, b = int(lo), int(hi or lo)
    if not (0 < a <= b <= 65535):
        raise ValueError(f"port out of range in {item!r}")
    return a, b


def _expose(value: Any) -> tuple[str, ...]:
    out: list[str] = []
    for item in value or []:
        text = _s(item)
        port, _, proto = text.partition("/")
        lo, hi = _range(port, item)
        out.extend(f"{p}/{proto or 'tcp'}" for p in range(lo, hi + 1))
    return tuple(out)


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
    text = _s(value)
    if text.startswith("on-failure:"):
        text = "on-failure"
    if text not in RESTART_VALUES:
        raise ValueError(f"{value!r} is not a restart policy (use one of {RESTART_VALUES})")
    return text


def _healthcheck(value: Any) -> Healthcheck:
    if not isinstance(value, dict):
        raise ValueError("expected a mapping")
    test = value.get("test")
    if isinstance(test, str):
        test_t: tuple[str, ...] = ("CMD-SHELL", test)
    else:
        test_t = tuple(_s(t) for t in test or ())
    if value.get("disable"):
        test_t = ("NONE",)

    def dur(k: str) -> int | None:
        return parse_duration_ns(value[k]) if value.get(k) is not None else None

    return Healthcheck(
        test=test_t,
        interval_ns=dur("interval"),
        timeout_ns=dur("timeout"),
        retries=int(value["retries"]) if value.get("retries") is not None else None,
        start_period_ns=dur("start_period"),
        disable=bool(value.get("disable", False)),
    )


def _ulimits(value: Any) -> tuple[Ulimit, ...]:
    out = []
    for name, conf in sorted((value or {}).items()):
        if isinstance(conf, dict):
            out.append(Ulimit(name=name, soft=int(conf["soft"]), hard=int(conf["hard"])))
        else:
            out.append(Ulimit(name=name, soft=int(conf), hard=int(conf)))
    return tuple(out)


def _extra_hosts(value: Any) -> tuple[str, ...]:
    if isinstance(value, dict):
        return tuple(f"{k}:{v}" for k, v in value.items())
    return tuple(h.replace("=", ":", 1) if "=" in h else h for h in _str_list(value))


def _labels(value: Any) -> dict[str, str]:
    return {normalise_label_name(k): v for k, v in key_value_map(value).items()}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {value!r}")


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else _bool(value)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _str(value: Any) -> str:
    return _s(value)


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
            if key in IGNORED_KEYS:
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
                parsed.network_mode = _s(value)
            else:
                problems.append(Problem(where, f"unsupported compose key {key!r}"))
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(Problem(where, str(exc).strip("'\"") or type(exc).__name__))
    if parsed.network_mode and parsed.networks:
        problems.append(
            Problem(f"{path}.network_mode", "network_mode cannot be combined with networks")
        )
    return parsed, problems
