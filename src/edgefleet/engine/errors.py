"""Typed engine errors: what failed, on which object, and what to do."""

from __future__ import annotations


class EngineError(Exception):
    """An engine call failed on an object."""

    def __init__(self, obj: str, message: str, *, status: int = 0) -> None:
        self.obj = obj
        self.status = status
        super().__init__(f"{obj}: {message}")


class EngineUnavailable(EngineError):
    """The engine does not answer (socket missing, refused, or it died mid-call). Retry later."""


class NotFound(EngineError):
    """The object does not exist on the engine."""


class Conflict(EngineError):
    """The name is in use or the object is in a state that forbids the call."""


class PullFailed(EngineError):
    """An image could not be pulled; `cause` says why (registry, network, disk)."""

    def __init__(self, image: str, cause: str) -> None:
        self.image = image
        self.cause = cause
        super().__init__(f"image {image}", f"pull failed: {cause}")


class StaleTask(EngineError):
    """The engine keeps runtime state (a containerd task or runc state) for a container it
    believes is not running, so every start fails ("task <id>: already exists", "id already
    in use"). Left by an engine that died while starting the container; it does not clear
    itself for minutes. Cure: remove the container and create it again (same config)."""

    MARKERS = ("already exists", "id already in use")

    @classmethod
    def recognise(cls, exc: EngineError) -> EngineError:
        """`exc` as a StaleTask when a start failed that way, else `exc` unchanged."""
        if exc.status == 500 and any(m in str(exc) for m in cls.MARKERS):
            return cls(exc.obj, str(exc).removeprefix(f"{exc.obj}: "), status=exc.status)
        return exc
