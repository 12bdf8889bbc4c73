"""`diagnose checks` on a misconfigured device: one bad optional field in config.json is a
failing check_config of its own and every other check still runs; a refused file fails
check_config; an IPv4-literal API endpoint makes the IPv6 stack check not applicable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from edgefleet.cli import app
from edgefleet.diagnose import netchecks as n
from edgefleet.diagnose.host import Host
from tests.diagnose.test_netchecks import _Ping, serve

# a default IPv6 route (on eth0): the IPv6 stack check applies to host names on this host
IPV6_DEFAULT = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
                "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n")


def host_tree(root: Path) -> Host:
    (root / "proc/net").mkdir(parents=True)
    (root / "proc/net/ipv6_route").write_text(IPV6_DEFAULT)
    (root / "var/lib/docker").mkdir(parents=True)
    return Host(root=root, run_commands=False)


def checks(root: Path, config: dict[str, Any]) -> tuple[int, dict[str, dict[str, Any]]]:
    path = root / "config.json"
    path.write_text(json.dumps(config))
    r = CliRunner().invoke(app, ["diagnose", "checks", "--json", "--root", str(root),
                                 "--config", str(path)])
    assert "Traceback" not in r.output
    return r.exit_code, {c["name"]: c for c in json.loads(r.stdout)["checks"]}


def test_ipv4_literal_endpoint_has_no_ipv6_stack_to_check(tmp_path: Path) -> None:
    server, port = serve(_Ping)
    try:
        result = n.check_networking(api_endpoint=f"http://127.0.0.1:{port}",
                                    host=host_tree(tmp_path))
    finally:
        server.shutdown()
    assert result.success, result.status
    assert "IPv6 stack: not applicable (the API endpoint is an IPv4 address)" in result.status


def test_one_bad_optional_field_fails_check_config_and_every_check_runs(
        tmp_path: Path) -> None:
    host_tree(tmp_path)
    server, port = serve(_Ping)
    try:
        code, found = checks(tmp_path, {
            "apiEndpoint": f"http://127.0.0.1:{port}", "listenPort": port,
            "dnsServers": "127.0.0.1#5399", "uuid": "a" * 32, "deviceType": "generic-amd64"})
    finally:
        server.shutdown()
    assert code == 1
    bad = found["check_config"]
    assert not bad["success"] and "dnsServers" in bad["status"], bad
    assert "default" in bad["status"] and "edgefleet config set" in bad["status"]
    # the checks config.json feeds still ran, with the other fields
    assert found["check_networking"]["success"], found["check_networking"]
    assert found["check_supervisor"]["success"], found["check_supervisor"]
    assert "check_dns" in found and "check_memory" in found


def test_a_refused_config_fails_check_config_naming_the_field(tmp_path: Path) -> None:
    host_tree(tmp_path)
    code, found = checks(tmp_path, {"applicationId": "twelve"})
    assert code == 1
    assert not found["check_config"]["success"]
    assert "applicationId" in found["check_config"]["status"]
    assert "check_memory" in found
