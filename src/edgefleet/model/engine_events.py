"""Value types of engine activity: pull progress, events, log lines."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PullProgress:
    """Progress of one image pull, in bytes over all its layers (total grows as layers appear)."""

    image: str
    downloaded: int
    total: int
    note: str = ""
    """The engine's word on trouble (`Retrying in 5 seconds` after a broken download)."""

    @property
    def percent(self) -> int:
        return int(100 * self.downloaded / self.total) if self.total else 0


@dataclass(frozen=True)
class EngineEvent:
    """One engine event (container start/die/health_status, image pull, ...)."""

    type: str
    action: str
    id: str
    attributes: dict[str, str]
    time_nano: int


@dataclass(frozen=True)
class LogLine:
    """One line of a container's output."""

    container_id: str
    message: str
    timestamp_ms: int
    is_stderr: bool
