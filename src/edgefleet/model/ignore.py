"""`.dockerignore` rules as Docker reads them (moby's patternmatcher), matched without regular
expressions so that no pattern can make matching slow.

Docker's rules: lines starting with `#` are comments; each pattern is trimmed, cleaned
(`a//b/../c` is `a/c`, a trailing `/` goes) and taken relative to the context root (a leading
`/` is dropped); `*` and `?` stay within one path element, `[...]` is a character class, `\\`
escapes; `**` spans any number of elements (`**/` zero or more directories, a final `**`
anything); `!` re-includes; the last pattern that matches decides; a pattern matching a
directory matches everything under it.

Docker turns a pattern into a regular expression. Here a pattern is a list of tokens run as a
small automaton, one set of states per character: the cost is at most characters x tokens, with
no backtracking, and repeated `**` collapse into one token. A budget of steps per rule set
bounds even that; beyond it matching stops with InvalidInput.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from edgefleet.model.errors import InvalidInput, Problem

LIT, ONE, STAR, DSTAR, DSTAR_END, CLASS = range(6)
MATCH_BUDGET = 20_000_000
"""Automaton steps one rule set may spend over a whole build context."""

Token = tuple[int, str, bool]
"""(kind, text, negated): text is the literal character or a class's members spec."""


def _class_match(spec: str, negated: bool, ch: str) -> bool:
    i, hit = 0, False
    while i < len(spec):
        lo = spec[i]
        if lo == "\\" and i + 1 < len(spec):
            i += 1
            lo = spec[i]
        if i + 2 < len(spec) and spec[i + 1] == "-":
            hi = spec[i + 2]
            if hi == "\\" and i + 3 < len(spec):
                i += 1
                hi = spec[i + 2]
            hit = hit or lo <= ch <= hi
            i += 3
        else:
            hit = hit or ch == lo
            i += 1
    return hit != negated


def _class_end(pattern: str, i: int) -> int:
    """Where the class opened at `i` closes (a `]` right after `[` or `[^` is a member);
    -1 when it does not: the `[` is then a plain character."""
    start = i + 1
    if pattern[start:start + 1] == "^":
        start += 1
    if pattern[start:start + 1] == "]":
        start += 1
    return pattern.find("]", start)


def tokens(pattern: str) -> list[Token]:
    """The tokens of one cleaned pattern (consecutive `**` collapsed)."""
    out: list[Token] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 2
                if pattern[i:i + 1] == "/":
                    i += 1
                kind = DSTAR_END if i >= len(pattern) else DSTAR
                while out and out[-1][0] == DSTAR:  # (.*/)?(.*/)? is (.*/)?; (.*/)?.* is .*
                    out.pop()
                if not (out and out[-1][0] == DSTAR_END):
                    out.append((kind, "", False))
                continue
            out.append((STAR, "", False))
        elif c == "?":
            out.append((ONE, "", False))
        elif c == "[" and (end := _class_end(pattern, i)) > 0:
            spec = pattern[i + 1:end]
            negated = spec.startswith("^")
            out.append((CLASS, spec[1:] if negated else spec, negated))
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append((LIT, pattern[i], False))
        else:
            out.append((LIT, c, False))
        i += 1
    return out


@dataclass(frozen=True)
class Pattern:
    """One `.dockerignore` line."""

    text: str
    exclusion: bool
    toks: tuple[Token, ...]
    literal: bool
    """No wildcards: compared as a string."""


@dataclass
class IgnoreRules:
    """The patterns of one `.dockerignore`, in order."""

    patterns: list[Pattern]
    budget: int = MATCH_BUDGET
    spent: int = field(default=0)

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def _run(self, p: Pattern, path: str) -> bool:
        if p.literal:
            return p.text == path
        toks = p.toks
        n = len(toks)

        def close(states: set[tuple[int, bool]]) -> set[tuple[int, bool]]:
            todo = list(states)
            while todo:
                i, inner = todo.pop()
                if not inner and i < n and toks[i][0] in (STAR, DSTAR, DSTAR_END) \
                        and (i + 1, False) not in states:
                    states.add((i + 1, False))
                    todo.append((i + 1, False))
            return states

        current = close({(0, False)})
        for ch in path:
            self.spent += len(current)
            if self.spent > self.budget:
                raise InvalidInput(".dockerignore", [Problem(p.text, (
                    "these patterns are too costly to match against this many files; "
                    "simplify them"))])
            nxt: set[tuple[int, bool]] = set()
            for i, inner in current:
                if inner:  # inside the `.*/` of a `**/`
                    nxt.add((i, True))
                    if ch == "/":
                        nxt.add((i + 1, False))
                    continue
                if i >= n:
                    continue
                kind, text, negated = toks[i]
                if kind == LIT:
                    if ch == text:
                        nxt.add((i + 1, False))
                elif kind == ONE:
                    if ch != "/":
                        nxt.add((i + 1, False))
                elif kind == CLASS:
                    if ch != "/" and _class_match(text, negated, ch):
                        nxt.add((i + 1, False))
                elif kind == STAR:
                    if ch != "/":
                        nxt.add((i, False))
                elif kind == DSTAR_END:
                    nxt.add((i, False))
                else:  # DSTAR
                    nxt.add((i, True))
                    if ch == "/":
                        nxt.add((i + 1, False))
            if not nxt:
                return False
            current = close(nxt)
        return (n, False) in current

    def ignored(self, path: str) -> bool:
        """Whether a context-relative path (posix) is left out of the build context."""
        parts = path.split("/")
        parents = ["/".join(parts[:k]) for k in range(1, len(parts))]
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:  # this pattern cannot change the answer
                continue
            hit = self._run(p, path) or any(self._run(p, d) for d in parents)
            if hit:
                matched = not p.exclusion
        return matched


def parse(text: str) -> IgnoreRules:
    """The rules of a `.dockerignore` file's text."""
    patterns: list[Pattern] = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/") or "/"
        if line in ("", "."):
            continue
        toks = tokens(line)
        literal = all(k == LIT for k, _, _ in toks)
        patterns.append(Pattern(text="".join(t for _, t, _ in toks) if literal else line,
                                exclusion=exclusion, toks=tuple(toks), literal=literal))
    return IgnoreRules(patterns)
