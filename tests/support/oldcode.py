"""The previous edgefleet (hash version 1), unpacked from git history, for upgrade tests."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

OLD_COMMIT = "b14aa87"
"""The last commit whose containers carry hash version 1 labels."""
REPO = Path(__file__).resolve().parents[2]


def old_source(into: Path) -> Path:
    """`src/` of OLD_COMMIT unpacked under `into`; skips the test when history is missing."""
    out = subprocess.run(["git", "-C", str(REPO), "archive", OLD_COMMIT, "src"],
                         capture_output=True, timeout=60)
    if out.returncode != 0:
        pytest.skip(f"git history with {OLD_COMMIT} is not available")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"
