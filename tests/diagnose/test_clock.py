"""check_timesync without timedatectl: the clock against a real local server's Date header."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from edgefleet.diagnose.clock import check_clock_skew


@pytest.fixture
def api() -> Iterator[tuple[str, list[float]]]:
    """An HTTP API on 127.0.0.1 whose Date header is now + offset[0] seconds."""
    offset = [0.0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def date_time_string(self, timestamp: float | None = None) -> str:
            return formatdate(time.time() + offset[0], usegmt=True)

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", offset
    server.shutdown()
    server.server_close()


def test_clock_in_sync_passes_and_behind_fails(api: tuple[str, list[float]]) -> None:
    url, offset = api
    assert check_clock_skew(api_endpoint=url).success
    offset[0] = 3 * 86400.0  # the server is 3 days ahead: our clock is behind
    bad = check_clock_skew(api_endpoint=url)
    assert not bad.success and "behind" in bad.status and "not yet valid" in bad.status


def test_unreachable_api_is_not_a_pass() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = check_clock_skew(api_endpoint=f"http://127.0.0.1:{port}")
    assert not result.success and "not applicable" in result.status
