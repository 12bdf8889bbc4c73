"""Compose normalisation: every field maps onto the ServiceSpec, every bad field is named."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.model.compose import parse_service
from edgefleet.model.compose_values import parse_duration_ns, parse_size
from edgefleet.model.service import PortBinding


def fields(composition: dict[str, Any]) -> dict[str, Any]:
    parsed, problems = parse_service(composition=composition, path="svc")
    assert problems == []
    return parsed.fields


def problems(composition: dict[str, Any]) -> list[str]:
    return [str(p) for p in parse_service(composition=composition, path="svc")[1]]


def test_environment_list_and_map_forms_agree() -> None:
    as_list = fields({"environment": ["A=1", "B=two=2", "EMPTY=", "UNSET"]})["environment"]
    as_map = fields({"environment": {"A": 1, "B": "two=2", "EMPTY": ""}})
    assert as_list == as_map["environment"] == {"A": "1", "B": "two=2", "EMPTY": ""}


def test_a_null_environment_value_is_an_empty_string_as_balena_reads_it() -> None:
    assert fields({"environment": {"UNSET": None}})["environment"] == {"UNSET": ""}


def test_yaml_booleans_become_lowercase_strings() -> None:
    assert fields({"environment": {"FLAG": True}})["environment"] == {"FLAG": "true"}


def test_ports_short_long_ranges_and_protocols() -> None:
    ports = fields({"ports": ["80:8080", "127.0.0.1:53:53/udp", "1000-1001:2000-2001", "9000",
                              {"target": 81, "published": 8081, "protocol": "tcp"}]})["ports"]
    assert ports == (
        PortBinding(container_port=8080, host_port=80),
        PortBinding(container_port=53, protocol="udp", host_ip="127.0.0.1", host_port=53),
        PortBinding(container_port=2000, host_port=1000),
        PortBinding(container_port=2001, host_port=1001),
        PortBinding(container_port=9000, host_port=9000),
        PortBinding(container_port=81, host_port=8081),
    )


def test_expose_and_commands() -> None:
    f = fields({"expose": ["1234", "53/udp"], "command": "sh -c 'echo hi'",
                "entrypoint": ["/bin/sh"]})
    assert f["expose"] == ("1234/tcp", "53/udp")
    assert f["command"] == ("sh", "-c", "echo hi")
    assert f["entrypoint"] == ("/bin/sh",)


def test_restart_no_parsed_by_yaml_as_false_means_no() -> None:
    assert fields({"restart": False})["restart"] == "no"
    assert fields({"restart": "unless-stopped"})["restart"] == "unless-stopped"
    assert fields({"restart": "sometimes"})["restart"] == "always"  # balena's fallback


def test_depends_on_list_and_map_with_conditions() -> None:
    assert fields({"depends_on": ["db"]})["depends_on"] == {"db": "service_started"}
    got = fields({"depends_on": {"db": {"condition": "service_healthy"},
                                 "init": {"condition": "service_completed_successfully"}}})
    assert got["depends_on"] == {"db": "service_healthy", "init": "service_completed_successfully"}
    assert problems({"depends_on": {"db": {"condition": "whenever"}}})


def test_healthcheck_durations_and_forms() -> None:
    hc = fields({"healthcheck": {"test": "wget -q localhost", "interval": "1m30s",
                                 "timeout": "500ms", "retries": 3, "start_period": 5}})
    check = hc["healthcheck"]
    assert check.test == ("CMD-SHELL", "wget -q localhost")
    assert check.interval_ns == 90 * 10**9
    assert check.timeout_ns == 500 * 10**6
    assert check.start_period_ns == 5 * 10**9
    assert check.retries == 3


def test_sizes_limits_and_misc_fields() -> None:
    f = fields({"mem_limit": "512m", "shm_size": "1g", "cpus": 1.5, "cpu_shares": 512,
                "ulimits": {"nofile": {"soft": 10, "hard": 20}, "nproc": 65535},
                "sysctls": ["net.core.somaxconn=1024"], "extra_hosts": ["db:127.0.0.1"],
                "dns": "1.1.1.1", "cap_add": ["NET_ADMIN"], "devices": ["/dev/ttyUSB0"],
                "privileged": True, "init": True, "read_only": True, "user": "1000",
                "working_dir": "/app", "hostname": "box", "stop_signal": "SIGINT",
                "stop_grace_period": "30s", "group_add": ["dialout"],
                "security_opt": ["no-new-privileges"], "tmpfs": "/run"})
    assert f["mem_limit"] == 512 * 1024**2 and f["shm_size"] == 1024**3
    assert [(u.name, u.soft, u.hard) for u in f["ulimits"]] == [("nofile", 10, 20),
                                                                 ("nproc", 65535, 65535)]
    assert f["sysctls"] == {"net.core.somaxconn": "1024"}
    assert f["extra_hosts"] == ("db:127.0.0.1",)
    assert f["dns"] == ("1.1.1.1",)
    assert f["stop_grace_period_s"] == 30
    assert f["tmpfs"] == ("/run",)


def test_unknown_keys_are_reported_by_name_and_all_problems_collected() -> None:
    found = problems({"imagee": "x", "ports": ["notaport"], "restart": ["later"]})
    assert any("svc.imagee" in p and "unsupported compose key 'imagee'" in p for p in found)
    assert any(p.startswith("svc.ports") for p in found)
    assert any(p.startswith("svc.restart") for p in found)


def test_anonymous_volume_is_refused_with_advice() -> None:
    assert any("anonymous volume" in p for p in problems({"volumes": ["/data"]}))


def test_build_is_ignored() -> None:
    assert fields({"build": "./frontend"}) == {}


@given(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
                       st.text(alphabet="abc=123 ", max_size=8), max_size=6))
@settings(max_examples=50, deadline=None)
def test_environment_map_and_list_forms_are_equivalent(env: dict[str, str]) -> None:
    as_list = [f"{k}={v}" for k, v in env.items()]
    assert fields({"environment": as_list})["environment"] == fields({"environment": env})[
        "environment"]


@pytest.mark.parametrize(("text", "ns"), [("10s", 10**10), ("1h", 3600 * 10**9),
                                          ("1m30s", 90 * 10**9), (2, 2 * 10**9)])
def test_durations(text: object, ns: int) -> None:
    assert parse_duration_ns(text) == ns


def test_bad_duration_and_size_are_errors() -> None:
    with pytest.raises(ValueError):
        parse_duration_ns("soon")
    with pytest.raises(ValueError):
        parse_size("lots")
