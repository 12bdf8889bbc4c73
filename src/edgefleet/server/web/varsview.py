"""Variables as the device page shows them: each service's effective value and where it comes
from (fleet, fleet+service, device, device+service; lowest to highest), with the values it
overrides."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgefleet.server import tables as t

LEVELS = ("fleet", "fleet+service", "device", "device+service")


@dataclass
class Effective:
    """One variable of one service: the value in force, its level, and what it hides."""

    service: str
    name: str
    value: str
    level: str
    variable_id: int
    overridden: list[tuple[str, str]] = field(default_factory=list)
    """(level, value) of lower levels this one overrides."""


def level_of(v: t.Variable) -> str:
    return ("device" if v.device_id is not None else "fleet") + ("+service" if v.service
                                                                 else "")


def effective_env(variables: list[t.Variable], *, services: list[str]) -> list[Effective]:
    """Each service's environment from the variables, with sources, sorted by service, name."""
    out: list[Effective] = []
    env = [v for v in variables if v.kind == "env"]
    for service in services:
        found: dict[str, Effective] = {}
        for level in LEVELS:
            for v in env:
                if level_of(v) != level or v.service not in ("", service):
                    continue
                if level.endswith("+service") and v.service != service:
                    continue
                prev = found.get(v.name)
                entry = Effective(service=service, name=v.name, value=v.value, level=level,
                                  variable_id=v.id)
                if prev is not None:
                    entry.overridden = [*prev.overridden, (prev.level, prev.value)]
                found[v.name] = entry
        out.extend(sorted(found.values(), key=lambda e: e.name))
    return out


def effective_config(variables: list[t.Variable]) -> list[Effective]:
    """Configuration variables (device values over fleet values), with sources."""
    found: dict[str, Effective] = {}
    for level in ("fleet", "device"):
        for v in variables:
            if v.kind != "config" or level_of(v) != level:
                continue
            prev = found.get(v.name)
            entry = Effective(service="", name=v.name, value=v.value, level=level,
                              variable_id=v.id)
            if prev is not None:
                entry.overridden = [(prev.level, prev.value)]
            found[v.name] = entry
    return sorted(found.values(), key=lambda e: e.name)
