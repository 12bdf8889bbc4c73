"""`/v1/healthy`'s rules as a pure function (compat §5)."""

from __future__ import annotations

from edgefleet.device.health import HealthInput, health

NOW = 10_000_000
POLL = 60_000


def judge(**kw: object) -> tuple[bool, str]:
    base: dict[str, object] = dict(now_ms=NOW, poll_interval_ms=POLL, started_ms=NOW - 1000,
                                   managed=True, last_fetch_ms=NOW - 1000,
                                   apply_started_ms=None, apply_download_ms=0,
                                   last_loop_ms=NOW - 1000, loop_running=True)
    base.update(kw)
    return health(data=HealthInput(**base))  # type: ignore[arg-type]


def test_healthy_device() -> None:
    assert judge() == (True, "OK")


def test_old_fetch_fails_only_when_managed() -> None:
    ok, why = judge(last_fetch_ms=NOW - 2 * POLL - 1)
    assert not ok and "fetch" in why
    assert judge(last_fetch_ms=NOW - 2 * POLL - 1, managed=False)[0]
    assert not judge(last_fetch_ms=None, started_ms=NOW - 3 * POLL)[0]
    assert judge(last_fetch_ms=None, started_ms=NOW - POLL)[0], "grace after start"


def test_long_apply_fails_but_downloading_does_not_count() -> None:
    ok, why = judge(apply_started_ms=NOW - 3 * POLL)
    assert not ok and "apply" in why
    assert judge(apply_started_ms=NOW - 3 * POLL, apply_download_ms=2 * POLL)[0]


def test_a_stopped_or_stuck_loop_fails() -> None:
    assert not judge(loop_running=False)[0]
    ok, why = judge(last_loop_ms=NOW - 2 * POLL - 61_000)
    assert not ok and "loop" in why
