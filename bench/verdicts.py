"""Verdicts and RESULTS.md sections for the benches: every verdict a bench writes is computed
here from the numbers that bench measured in the same run, never typed in by hand."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).parent / "RESULTS.md"


def check(what: str, measured: str, ok: bool) -> str:
    """One verdict line: what the target is, what this run measured, met or MISSED."""
    return f"- {what}: {'met' if ok else '**MISSED**'} (this run: {measured})"


def checks(lines: list[str]) -> str:
    missed = sum("**MISSED**" in line for line in lines)
    head = ("Verdicts (computed by the script from this run's numbers): "
            + ("all targets met." if not missed else f"{missed} of {len(lines)} targets missed."))
    return head + "\n\n" + "\n".join(lines)


def write_section(name: str, section: str, results: Path = RESULTS) -> None:
    """Replace (or append) the `## name` section of bench/RESULTS.md with `section`."""
    text = "\n" + (results.read_text() if results.exists() else "# Benchmark results\n")
    pattern = re.compile(rf"\n## {re.escape(name)}\n.*?(?=\n## |\Z)", re.S)
    body = "\n" + section.strip("\n") + "\n"
    if pattern.search(text):  # in place, so the file keeps its order
        text = pattern.sub(lambda _: body, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    results.write_text(text.strip("\n") + "\n")
