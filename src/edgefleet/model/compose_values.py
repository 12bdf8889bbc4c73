"""Compose value converters: durations, sizes, strings, lists, maps, ports, healthchecks.

Each raises ValueError (or TypeError/KeyError) with a message for the user; `model.compose`
turns it into a Problem with the field's path.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from edgefleet.model.service import Healthcheck, PortBinding, Ulimit

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


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
    """A compose map given as a mapping or as a list of `K=V` (or `K:V` for extra_hosts);
    a null value is `""` (as balena reads `environment: {A: }`)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list):
                raise ValueError(f"the value of {k!r} must be a string, not a"
                                 f" {type(v).__name__}")
        return {str(k): _s(v) for k, v in value.items()}
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
    return ports(value)


def ports(value: Any, *, v1: bool = False) -> tuple[PortBinding, ...]:
    """Compose `ports` → bindings; `v1=True` reads them as hash version 1 did (a
    container-only port had no host port)."""
    out: list[PortBinding] = []
    for item in value or []:
        if isinstance(item, dict):
            out.append(
                PortBinding(
                    container_port=int(item["target"]),
                    protocol=item.get("protocol", "tcp"),
                    host_ip=str(item.get("host_ip", "")),
                    host_port=int(item.get("published") or item["target"]),
                )
            )
            continue
        if isinstance(item, list | bool) or item is None:
            raise ValueError(f"bad port {item!r}")
        text = _s(item)
        proto = "tcp"
        if "/" in text:
            text, proto = text.rsplit("/", 1)
        if proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"bad protocol {proto!r} in port {item!r}")
        host_ip = ""
        if text.startswith("["):  # an IPv6 host IP: [::1]:6001:6001
            host_ip, sep, text = text[1:].partition("]:")
            parts = text.split(":") if sep else []
            if len(parts) != 2:
                raise ValueError(f"bad port {item!r}")
        else:
            parts = text.rsplit(":", 2) if text.count(":") <= 2 else []
        if not parts:
            raise ValueError(f"bad port {item!r}")
        host, cont = "", parts[-1]
        if len(parts) == 2:
            host = parts[0]
        elif len(parts) == 3:
            host_ip, host = parts[0], parts[1]
        c_lo, c_hi = _range(cont, item)
        only = not host
        # a container-only port is published on the same host port, as balena does
        h_lo, h_hi = _range(host or cont, item)
        if c_lo == c_hi and h_hi > h_lo:  # one container port on a host range
            out.append(PortBinding(container_port=c_lo, protocol=proto, host_ip=host_ip,
                                   host_port=h_lo, host_port_end=h_hi))
            continue
        if h_hi - h_lo != c_hi - c_lo:
            raise ValueError(f"port ranges of different length in {item!r}")
        for i in range(c_hi - c_lo + 1):
            out.append(
                PortBinding(
                    container_port=c_lo + i,
                    protocol=proto,
                    host_ip=host_ip,
                    host_port=None if (only and v1) else h_lo + i,
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
