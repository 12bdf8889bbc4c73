"""Fixtures of the e2e tests that share them (a module may define its own of the same name)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.devices import E2EDevice, running_device
from tests.e2e.tunnel_support import Server


@pytest.fixture
def server(tmp_path: Path, registry: str) -> Iterator[Server]:
    """A fleet server process for this test (restartable on its port)."""
    srv = Server(root=tmp_path, registry=registry)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def device(tmp_path: Path) -> Iterator[E2EDevice]:
    """One device ("dev1") with its own engine and supervisor."""
    with running_device("dev1", tmp_path / "dev1") as dev:
        yield dev
