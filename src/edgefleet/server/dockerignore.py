"""`.dockerignore` matching with Docker's rules (moby patternmatcher): patterns are relative to
the context root, `*` and `?` stay within one path element, `**` spans any number of them, a
`!` pattern re-includes, the last matching pattern wins, and an excluded directory excludes
everything under it."""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool


def _compile(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i:i + 2] == "**":
                i += 1
                if pattern[i + 1:i + 2] == "/":  # `**/` = zero or more directories
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i)
            if end < 0:
                out.append(re.escape(c))
            else:
                out.append("[" + pattern[i + 1:end].replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return re.compile("".join(out))


def parse(text: str) -> list[_Pattern]:
    """The patterns of a .dockerignore file (comments and blank lines skipped)."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = posixpath.normpath(line).lstrip("/")
        if line in ("", "."):
            continue
        patterns.append(_Pattern(_compile(line), exclusion))
    return patterns


def ignored(path: str, *, patterns: list[_Pattern]) -> bool:
    """Whether a context-relative path (posix) is left out of the build context."""
    parents = path.split("/")
    result = False
    for p in patterns:
        match = p.regex.match(path) is not None
        if not match:  # a pattern matching a parent directory matches its contents
            match = any(p.regex.match("/".join(parents[:n])) for n in range(1, len(parents)))
        if match:
            result = not p.exclusion
    return result


def included_files(root: str, *, patterns: list[_Pattern], always: frozenset[str] = frozenset()
                   ) -> list[str]:
    """Context-relative paths of every file and directory that goes into the context;
    paths in `always` (the Dockerfile, .dockerignore) are sent anyway, as Docker does."""
    keep: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames) + sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in always or not ignored(rel, patterns=patterns):
                keep.append(rel)
        dirnames.sort()
    return keep
