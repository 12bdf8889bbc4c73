"""Time in one place: the wall clock in milliseconds, engine timestamps (RFC 3339 with
nanoseconds) as milliseconds since the epoch, and the exponential backoff every retry uses."""

from __future__ import annotations

import time
from datetime import datetime


def now_ms() -> int:
    """Milliseconds since the epoch (wall clock)."""
    return int(time.time() * 1000)


def backoff_s(attempt: int, *, base_s: float, cap_s: float) -> float:
    """min(base x 2^attempt, cap); 0 before the first attempt (attempt < 0)."""
    if attempt < 0:
        return 0.0
    return float(min(base_s * 2 ** min(attempt, 30), cap_s))


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
