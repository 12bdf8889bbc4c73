"""Where each variable's value comes from, as the device page shows it."""

from __future__ import annotations

from edgefleet.server import tables as t
from edgefleet.server.web.varsview import effective_config, effective_env


def var(i: int, name: str, value: str, *, device: bool = False, service: str = "",
        kind: str = "env") -> t.Variable:
    return t.Variable(id=i, kind=kind, fleet_id=1, device_id=7 if device else None,
                      service=service, name=name, value=value)


def test_each_value_names_its_level_and_what_it_overrides() -> None:
    rows = [var(1, "A", "fleet"), var(2, "A", "fleet-main", service="main"),
            var(3, "A", "device", device=True), var(4, "B", "fleet-only"),
            var(5, "A", "dev-worker", device=True, service="worker"),
            var(6, "C", "cfg", kind="config")]
    env = {(e.service, e.name): e for e in effective_env(rows, services=["main", "worker"])}
    assert (env["main", "A"].value, env["main", "A"].level) == ("device", "device")
    assert env["main", "A"].overridden == [("fleet", "fleet"), ("fleet+service", "fleet-main")]
    assert (env["worker", "A"].value, env["worker", "A"].level) == ("dev-worker",
                                                                    "device+service")
    assert env["worker", "A"].overridden == [("fleet", "fleet"), ("device", "device")]
    assert env["main", "B"].level == "fleet" and ("main", "C") not in env
    config = effective_config([*rows, var(7, "C", "dev-cfg", device=True, kind="config")])
    assert [(c.name, c.value, c.level, c.overridden) for c in config] == [
        ("C", "dev-cfg", "device", [("fleet", "cfg")])]
