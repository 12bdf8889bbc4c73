"""Which configuration variables turn delta updates on (issue 19): read by the device, which
applies deltas, and by the server, which makes them before devices ask."""

from __future__ import annotations

from collections.abc import Mapping

DELTA_VARS = ("BALENA_SUPERVISOR_DELTA", "RESIN_SUPERVISOR_DELTA", "SUPERVISOR_DELTA")
"""The configuration variables that turn delta updates on (fleet-wide or per device)."""
_ON = ("1", "true", "on", "yes")


def delta_enabled(config: Mapping[str, str]) -> bool:
    return any(config.get(name, "").strip().lower() in _ON for name in DELTA_VARS)
