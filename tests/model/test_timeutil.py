"""Engine timestamps."""

from __future__ import annotations

from edgefleet.model.timeutil import iso_to_ms


def test_nanosecond_timestamps_and_zero_values() -> None:
    assert iso_to_ms("2026-01-01T00:00:01.500000999Z") == 1_767_225_601_500
    assert iso_to_ms("0001-01-01T00:00:00Z") is None
    assert iso_to_ms("") is None and iso_to_ms("garbage") is None
