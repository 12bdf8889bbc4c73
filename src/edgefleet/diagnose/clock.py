"""Time sync without timedatectl: the local clock against the API server's `Date` header."""

from __future__ import annotations

import http.client
import ssl
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse

from edgefleet.diagnose.checks import CheckResult

MAX_SKEW_S = 300.0
TIMEOUT_S = 3.0


def server_time(*, url: str, timeout_s: float = TIMEOUT_S) -> float:
    """The API server's clock (epoch seconds) from the `Date` header of GET <url>/ping.

    TLS is not verified here on purpose: a skewed clock is what makes verification fail.
    """
    parsed = urlparse(url)
    host = parsed.hostname or ""
    conn: http.client.HTTPConnection
    if parsed.scheme == "https":
        conn = http.client.HTTPSConnection(host, parsed.port, timeout=timeout_s,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, parsed.port, timeout=timeout_s)
    try:
        conn.request("GET", parsed.path.rstrip("/") + "/ping")
        header = conn.getresponse().getheader("Date")
    finally:
        conn.close()
    if not header:
        raise ValueError(f"{url}/ping sent no Date header")
    return parsedate_to_datetime(header).timestamp()


def check_clock_skew(*, api_endpoint: str, now: float | None = None,
                     max_skew_s: float = MAX_SKEW_S) -> CheckResult:
    """Fail when the local clock differs from the API server's by more than `max_skew_s`."""
    try:
        remote = server_time(url=api_endpoint)
    except (OSError, ValueError, TypeError) as exc:
        return CheckResult("check_timesync", False,
                           f"not applicable: no timedatectl and the API server's time could"
                           f" not be read ({exc})")
    local = time.time() if now is None else now
    skew = local - remote
    if abs(skew) <= max_skew_s:
        return CheckResult("check_timesync", True,
                           f"Clock within {abs(skew):.0f} s of the API server's")
    side = "behind" if skew < 0 else "ahead of"
    hint = (": TLS certificates may be rejected as not yet valid" if skew < 0
            else ": TLS certificates may be rejected as expired")
    return CheckResult("check_timesync", False,
                       f"Clock is {abs(skew):.0f} s {side} the API server's{hint}")
