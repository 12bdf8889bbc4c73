"""Process start-up of `edgefleet supervisor run` (called by `cli.main` before any command
loads): keep the long-running supervisor process small (issue 4: under 60 MB RSS).

Some libraries import optional modules for features the supervisor never uses. Marking a
module as absent in `sys.modules` (the import system's own "not available" entry) makes
those imports fail at once, and each library below handles that `ImportError` by design.
Call this before the libraries are imported; modules already loaded are left alone."""

from __future__ import annotations

import sys

UNUSED: dict[str, str] = {
    "httpx._main": "httpx's command-line client; loads rich, pygments and click (3.2 MB)",
    "pydantic.v1": "FastAPI probes every annotation for pydantic-v1 models (1.6 MB)",
    "watchfiles": "uvicorn's --reload file watcher (0.7 MB)",
}
"""Each entry measured again on 2026-11-30 (the supervisor's modules imported in a fresh
interpreter with all but that entry blocked, median of 3): all three still pay; together
58.0 -> 52.6 MB."""


def skip_unused_imports() -> list[str]:
    """Block the modules in `UNUSED` that are not loaded yet; returns the ones blocked."""
    blocked = [name for name in UNUSED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    return blocked
