"""`.dockerignore` matching follows Docker's rules (pure, no engine)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgefleet.server.dockerignore import ignored, included_files, parse


def matcher(text: str) -> Callable[[str], bool]:
    patterns = parse(text)
    return lambda path: ignored(path, patterns=patterns)


def test_patterns() -> None:
    ig = matcher("# comment\n\nsecret.txt\n*.log\n!keep.log\nbuild/\ndocs/**/*.md\n"
                 "/abs.txt\ntmp?\n")
    assert ig("secret.txt") and not ig("sub/secret.txt")  # relative to the context root
    assert ig("a.log") and not ig("keep.log") and not ig("x/a.log")
    assert ig("build/x/y.o") and ig("build")  # a directory and its contents
    assert ig("docs/a.md") and ig("docs/x/y/z.md") and not ig("docs/a")
    assert ig("abs.txt") and ig("tmp1") and not ig("tmp12")


def test_last_match_wins_and_reinclusion_inside_excluded_dir() -> None:
    ig = matcher("logs\n!logs/keep.log\n")
    assert ig("logs/a.log") and not ig("logs/keep.log")
    assert matcher("!a.txt\n*.txt\n")("a.txt")
    ig = matcher("**/node_modules\n")
    assert ig("node_modules/x") and ig("a/b/node_modules/y")


def test_included_files_always_keeps_named_files(tmp_path: Path) -> None:
    for name in ("Dockerfile", ".dockerignore", "a.txt", "b.log", "d/c.log"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    kept = included_files(str(tmp_path), patterns=parse("*\n!a.txt\n"),
                          always=frozenset({"Dockerfile", ".dockerignore"}))
    assert sorted(kept) == [".dockerignore", "Dockerfile", "a.txt"]
