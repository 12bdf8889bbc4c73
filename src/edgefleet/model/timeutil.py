"""Engine timestamps (RFC 3339 with nanoseconds) as milliseconds since the epoch."""

from __future__ import annotations

from datetime import datetime


def iso_to_ms(iso: str | None) -> int | None:
    """`2026-01-01T00:00:00.123456789Z` → ms; None for empty, zero (`0001-…`) or bad values."""
    if not iso or iso.startswith("0001-"):
        return None
    text = iso.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    try:
        return int(datetime.fromisoformat(text + "+00:00").timestamp() * 1000)
    except ValueError:
        return None
