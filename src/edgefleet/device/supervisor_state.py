"""The supervisor's loop state (for status, the API and health) and its failure backoff."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgefleet.model import timeutil
from edgefleet.model.engine_state import EngineState

BACKOFF_BASE_S = 0.5


def backoff_s(*, failures: int, cap_s: float) -> float:
    """min(2^n * 500 ms, cap): the delay after `failures` consecutive failures."""
    if failures <= 0:
        return 0.0
    return timeutil.backoff_s(failures, base_s=BACKOFF_BASE_S, cap_s=cap_s)


@dataclass
class SupervisorState:
    """What the supervisor is doing, for status, the API and health."""

    app_state: str = "applied"
    """`applying` or `applied`."""
    last_error: str = ""
    waiting_for: list[str] = field(default_factory=list)
    apply_started_ms: int | None = None
    last_converged_ms: int | None = None
    last_loop_ms: int = 0
    failures: int = 0
    progress: dict[str, tuple[int, int]] = field(default_factory=dict)
    observed: EngineState | None = None
    last_fetch_ms: int | None = None
    """When the cloud link last fetched the target successfully (see `record_fetch`)."""
    apply_download_ms: int = 0
    """Time the current apply spent in rounds that downloaded images."""
    loop_running: bool = False


__all__ = ["BACKOFF_BASE_S", "SupervisorState", "backoff_s"]
