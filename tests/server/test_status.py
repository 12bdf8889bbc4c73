"""Device status from the heartbeat and the tunnel (compat §4), as pure functions."""

from __future__ import annotations

import pytest

from edgefleet.server.status import heartbeat_state, heartbeat_timeout_s, overall_status


@pytest.mark.parametrize(("heartbeat", "vpn", "expected"), [
    ("online", True, "Online"), ("online", False, "Heartbeat Only"),
    ("timeout", False, "Heartbeat Only"), ("offline", True, "VPN Only"),
    ("offline", False, "Offline"), ("unknown", False, "Offline"),
])
def test_with_a_tunnel_both_signals_count(heartbeat: str, vpn: bool, expected: str) -> None:
    assert overall_status(heartbeat=heartbeat, vpn_connected=vpn, tunnel=True) == expected


@pytest.mark.parametrize(("heartbeat", "expected"), [
    ("online", "Online"), ("timeout", "Online"), ("offline", "Offline"), ("unknown", "Offline"),
])
def test_without_a_tunnel_the_heartbeat_decides(heartbeat: str, expected: str) -> None:
    assert overall_status(heartbeat=heartbeat, vpn_connected=False, tunnel=False) == expected


def test_heartbeat_times_out_after_one_and_a_half_poll_intervals_then_grace() -> None:
    timeout = heartbeat_timeout_s(poll_ms=900_000, override_s=None)
    assert timeout == 1350.0
    assert heartbeat_timeout_s(poll_ms=60_000, override_s=None) == 900.0  # 10 min floor
    now = 10_000_000
    assert heartbeat_state(last_seen_ms=None, now_ms=now, timeout_s=timeout, grace_s=15) \
        == "unknown"
    assert heartbeat_state(last_seen_ms=now - 1_349_000, now_ms=now, timeout_s=timeout,
                           grace_s=15) == "online"
    assert heartbeat_state(last_seen_ms=now - 1_360_000, now_ms=now, timeout_s=timeout,
                           grace_s=15) == "timeout"
    assert heartbeat_state(last_seen_ms=now - 1_366_000, now_ms=now, timeout_s=timeout,
                           grace_s=15) == "offline"
