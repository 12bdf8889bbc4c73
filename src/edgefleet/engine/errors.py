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
