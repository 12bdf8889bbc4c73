"""Network checks against real servers on loopback: DNS, API ping (TLS told apart), supervisor."""

from __future__ import annotations

import http.server
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.diagnose import netchecks as n
from edgefleet.diagnose.host import Host


@pytest.fixture
def dns_server() -> Iterator[int]:
    """A UDP DNS server on 127.0.0.1 answering every A query with 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(512)
            except TimeoutError:
                continue
            question = data[12:]
            header = data[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(
                "127.0.0.1")
            sock.sendto(header + question + answer, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


def test_dns_passes_with_an_answering_server_and_names_a_dead_one(
    tmp_path: Path, dns_server: int
) -> None:
    host = Host(root=tmp_path, run_commands=False)
    ok = n.check_dns(host=host, api_host="api.example.test", dns_servers=["127.0.0.1"],
                     port_override=dns_server)
    assert ok.success, ok.status
    dead = n.check_dns(host=host, api_host="api.example.test", dns_servers=["127.0.0.9"])
    assert not dead.success and "127.0.0.9" in dead.status and "refused" in dead.status
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").write_text("nameserver 127.0.0.8\n")
    both = n.resolvers(host=host, dns_servers=["127.0.0.9"])
    assert [r.address for r in both] == ["127.0.0.8", "127.0.0.9"]


class _Ping(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b"OK" if self.path in ("/ping", "/v1/healthy") and self.status == 200 else b"no"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(handler: type[http.server.BaseHTTPRequestHandler],
          tls: ssl.SSLContext | None = None) -> tuple[http.server.HTTPServer, int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_networking_tells_tls_failure_from_refused_and_ok(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tls_server, tls_port = serve(_Ping, ctx)
    plain, plain_port = serve(_Ping)
    try:
        bad_ca = n.check_networking(api_endpoint=f"https://127.0.0.1:{tls_port}")
        assert not bad_ca.success and "API ssl failure" in bad_ca.status
        assert "deep packet inspection" in bad_ca.status
        refused = n.check_networking(api_endpoint=f"https://127.0.0.1:{free_port()}")
        assert not refused.success and "API refused failure" in refused.status
        ok = n.check_networking(api_endpoint=f"http://127.0.0.1:{plain_port}")
        assert ok.success, ok.status
        assert n.check_networking(api_endpoint=None).status.startswith("not applicable")
    finally:
        tls_server.shutdown()
        plain.shutdown()


def test_supervisor_check_uses_the_http_status() -> None:
    class Unhealthy(_Ping):
        status = 500

    healthy, port = serve(_Ping)
    sick, sick_port = serve(Unhealthy)
    try:
        assert n.check_supervisor(port=port).success
        result = n.check_supervisor(port=sick_port)
        assert not result.success and "HTTP 500" in result.status
        gone = n.check_supervisor(port=free_port())
        assert not gone.success and "not running" in gone.status
    finally:
        healthy.shutdown()
        sick.shutdown()
