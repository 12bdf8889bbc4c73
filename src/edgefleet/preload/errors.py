"""Errors and progress reporting shared by extract and inject."""

from __future__ import annotations

from typing import Protocol


class PreloadError(ValueError):
    """Preload cannot go on; the message says what, on which object, and what to do."""


class Progress(Protocol):
    """Where extract/inject report what they are doing and the bytes they have handled."""

    def phase(self, name: str, total: int) -> None:
        """A new phase (`verify`, `copy`) over `total` bytes starts."""

    def advance(self, n: int) -> None:
        """`n` more bytes are done."""


class NoProgress:
    """A Progress that shows nothing."""

    def phase(self, name: str, total: int) -> None:
        return None

    def advance(self, n: int) -> None:
        return None
