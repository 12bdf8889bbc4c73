"""check_networking's registry and IPv4/IPv6 sub-tests, against real servers on loopback and in
a network namespace of the test's own (issue 6)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.diagnose.host import Host
from edgefleet.diagnose.netchecks import check_networking
from edgefleet.diagnose.netstack import has_default_route

V6_DEFAULT = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
              "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n")
V4_TABLE = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
            "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_tree(root: Path, *, v6_default: bool) -> Path:
    (root / "proc" / "net").mkdir(parents=True)
    (root / "proc" / "net" / "route").write_text(V4_TABLE)
    (root / "proc" / "net" / "ipv6_route").write_text(V6_DEFAULT if v6_default else "")
    return root


def test_default_routes_are_read_from_the_host_tree(tmp_path: Path) -> None:
    with_v6 = Host(root=host_tree(tmp_path / "a", v6_default=True), run_commands=False)
    without = Host(root=host_tree(tmp_path / "b", v6_default=False), run_commands=False)
    assert has_default_route(host=with_v6, ipv6=True)
    assert not has_default_route(host=without, ipv6=True)
    assert has_default_route(host=without, ipv6=False)


@pytest.fixture
def token_registry() -> Iterator[int]:
    """A registry front on loopback: /v2/ wants a Bearer token that /token issues to d_dev/k."""
    good = "Basic " + base64.b64encode(b"d_dev:k").decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            if self.path.startswith("/token"):
                ok = auth == good
                self.send_response(200 if ok else 401)
                self.end_headers()
                self.wfile.write(json.dumps({"token": "t0k"}).encode() if ok else b"{}")
                return
            if auth == "Bearer t0k":
                self.send_response(200)
                self.end_headers()
                return
            self.send_response(401)
            port = self.server.server_address[1]
            self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{port}/token"'
                             ',service="registry"')
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


def test_registry_reachability_and_login(token_registry: int, registry: str) -> None:
    ok = check_networking(api_endpoint=None, registry_endpoint=registry)
    assert ok.success and f"Registry {registry}: reachable" in ok.status
    port = free_port()
    down = check_networking(api_endpoint=None, registry_endpoint=f"127.0.0.1:{port}")
    assert not down.success
    assert f"Registry: registry 127.0.0.1:{port}: unreachable (connection refused)" in down.status
    reg = f"127.0.0.1:{token_registry}"
    login = check_networking(api_endpoint=None, registry_endpoint=reg,
                             registry_credentials=("d_dev", "k"))
    assert login.success, login.status
    anonymous = check_networking(api_endpoint=None, registry_endpoint=reg)
    assert not anonymous.success and "requires a login" in anonymous.status
    wrong = check_networking(api_endpoint=None, registry_endpoint=reg,
                             registry_credentials=("d_dev", "nope"))
    assert not wrong.success and "registry login failed" in wrong.status


def test_ipv4_and_ipv6_stacks_in_a_network_namespace(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private network namespace")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 api.test\n::1 api.test\n")
    with_route = host_tree(tmp_path / "r6", v6_default=True)
    without = host_tree(tmp_path / "r4", v6_default=False)
    script = Path(__file__).with_name("netns_stacks.py")
    run = subprocess.run(
        ["unshare", "--mount", "--net", "sh", "-c",
         f'ip link set lo up && mount --bind "{hosts}" /etc/hosts && '
         f'exec "{sys.executable}" "{script}" "{with_route}" "{without}"'],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if run.returncode != 0 and "Operation not permitted" in run.stderr:
        pytest.skip(f"no namespaces here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert not out["v4only"]["success"]
    assert "IPv6 stack: refused failure" in out["v4only"]["status"]
    assert "IPv4 stack" not in out["v4only"]["status"]
    assert not out["v6only"]["success"]
    assert "IPv4 stack: refused failure" in out["v6only"]["status"]
    assert "IPv6 stack" not in out["v6only"]["status"]
    assert out["dual"]["success"], out["dual"]
    assert "IPv4 stack: OK" in out["dual"]["status"] and "IPv6 stack: OK" in out["dual"]["status"]
    assert out["no_v6_route"]["success"]
    assert "IPv6 stack: not applicable" in out["no_v6_route"]["status"]
