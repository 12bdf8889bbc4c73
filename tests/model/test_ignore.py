"""The `.dockerignore` matcher: Docker's answers (moby turns a pattern into a regular
expression; the same expression is the reference here) without its cost."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.model.errors import InvalidInput
from edgefleet.model.ignore import IgnoreRules, parse


def moby_regex(pattern: str) -> re.Pattern[str]:
    """moby patternmatcher's translation of a cleaned pattern."""
    out, i = "^", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c in ".$+()|{}^":
            out += "\\" + c
        else:
            out += c
        i += 1
    return re.compile(out + "$")


@settings(max_examples=300, deadline=None)
@given(pattern=st.text("ab/*?.", min_size=1, max_size=8),
       paths=st.lists(st.text("ab/.", min_size=1, max_size=8), min_size=1, max_size=10))
def test_same_answers_as_docker(pattern: str, paths: list[str]) -> None:
    rules = parse(pattern)
    if not rules.patterns or rules.patterns[0].text.startswith(".."):
        return
    one = IgnoreRules([rules.patterns[0]])
    rx = moby_regex(rules.patterns[0].text)
    for path in (p.strip("/") for p in paths):
        if path:
            assert one._run(one.patterns[0], path) == (rx.match(path) is not None), \
                (pattern, path)


def test_classes_escapes_and_exclusions() -> None:
    rules = parse("[a-c]x\n[^a]y\n[]]z\n\\*lit\n#comment\n  spaced  \nlogs\n!logs/keep\n")
    assert rules.ignored("bx") and not rules.ignored("dx")
    assert rules.ignored("by") and not rules.ignored("ay") and rules.ignored("]z")
    assert rules.ignored("*lit") and not rules.ignored("xlit")
    assert rules.ignored("spaced") and not rules.ignored("#comment")
    assert rules.ignored("logs/a") and not rules.ignored("logs/keep")


def test_many_double_stars_cost_few_steps() -> None:
    """Docker's regex for this line backtracks exponentially (issue 11: 12 `**` took 90 s);
    here the work is counted in automaton steps, and it is small."""
    rules = parse("**/" * 40 + "x\n" + "a**" * 40 + "x\n")
    rules.budget = 100_000
    assert not rules.ignored("/".join(["a"] * 40) + "/y")
    assert rules.ignored("/".join(["a"] * 40) + "/x")


def test_the_budget_stops_matching() -> None:
    rules = parse("*a*b*c*d*e*f*g*h*\n")
    rules.budget = 1000
    with pytest.raises(InvalidInput, match="too costly"):
        for n in range(1000):
            rules.ignored("abcdefg" * 20 + str(n))
