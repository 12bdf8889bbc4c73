"""`.dockerignore` matching follows Docker's rules (pure, no engine)."""

from __future__ import annotations

from pathlib import Path

from edgefleet.server.dockerignore import ignored, included_files, parse


def test_patterns() -> None:
    p = parse("# comment\n\nsecret.txt\n*.log\n!keep.log\nbuild/\ndocs/**/*.md\n"
              "/abs.txt\ntmp?\n")
    assert ignored("secret.txt", p) and not ignored("sub/secret.txt", p)  # root-relative
    assert ignored("a.log", p) and not ignored("keep.log", p) and not ignored("x/a.log", p)
    assert ignored("build/x/y.o", p) and ignored("build", p)  # a directory and its contents
    assert ignored("docs/a.md", p) and ignored("docs/x/y/z.md", p) and not ignored("docs/a", p)
    assert ignored("abs.txt", p) and ignored("tmp1", p) and not ignored("tmp12", p)


def test_last_match_wins_and_reinclusion_inside_excluded_dir() -> None:
    p = parse("logs\n!logs/keep.log\n")
    assert ignored("logs/a.log", p) and not ignored("logs/keep.log", p)
    p = parse("!a.txt\n*.txt\n")
    assert ignored("a.txt", p)
    p = parse("**/node_modules\n")
    assert ignored("node_modules/x", p) and ignored("a/b/node_modules/y", p)


def test_included_files_always_keeps_named_files(tmp_path: Path) -> None:
    for name in ("Dockerfile", ".dockerignore", "a.txt", "b.log", "d/c.log"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    p = parse("*\n!a.txt\n")
    kept = included_files(str(tmp_path), p, always=frozenset({"Dockerfile", ".dockerignore"}))
    assert sorted(kept) == [".dockerignore", "Dockerfile", "a.txt"]
