"""`.dockerignore` for pushed projects: the one matcher (`edgefleet.model.ignore`, Docker's
rules without regular expressions) and the one context walk (`edgefleet.engine.build`)."""

from __future__ import annotations

from pathlib import Path

from edgefleet.engine.build import context_files
from edgefleet.model.ignore import IgnoreRules, parse

__all__ = ["IgnoreRules", "ignored", "included_files", "parse"]


def ignored(path: str, *, patterns: IgnoreRules) -> bool:
    """Whether a context-relative path (posix) is left out of the build context."""
    return patterns.ignored(path)


def included_files(root: str, *, patterns: IgnoreRules,
                   always: frozenset[str] = frozenset()) -> list[str]:
    """Context-relative paths of every file and directory that goes into the context."""
    return context_files(Path(root), rules=patterns, always=always)
