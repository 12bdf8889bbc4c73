"""Run inside a fresh network + mount namespace (see test_netstack.py): `api.test` resolves to
127.0.0.1 and ::1; an HTTP /ping server listens on one or both; prints check_networking's
results per case as JSON."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
from pathlib import Path

from edgefleet.diagnose.host import Host
from edgefleet.diagnose.netchecks import check_networking


class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


class V6Server(http.server.HTTPServer):
    address_family = socket.AF_INET6


def serve(addresses: list[str], port: int) -> list[http.server.HTTPServer]:
    servers: list[http.server.HTTPServer] = []
    for addr in addresses:
        cls = V6Server if ":" in addr else http.server.HTTPServer
        srv = cls((addr, port), Ping)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    return servers


def main(with_route: Path, without_route: Path) -> None:
    out = {}
    cases = {"v4only": ["127.0.0.1"], "v6only": ["::1"], "dual": ["127.0.0.1", "::1"]}
    for port, (name, addrs) in enumerate(cases.items(), start=18080):
        servers = serve(addrs, port)
        result = check_networking(api_endpoint=f"http://api.test:{port}",
                                  host=Host(root=with_route, run_commands=False))
        out[name] = {"success": result.success, "status": result.status}
        if name == "dual":
            norte = check_networking(api_endpoint=f"http://api.test:{port}",
                                     host=Host(root=without_route, run_commands=False))
            out["no_v6_route"] = {"success": norte.success, "status": norte.status}
        for srv in servers:
            srv.shutdown()
            srv.server_close()
    print(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
