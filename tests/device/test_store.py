"""The store: migrations, last good target, bounded logs."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from edgefleet.device import store as store_mod
from edgefleet.device.store import Store


def test_head_revision_constant_matches_the_migrations() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_mod.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == store_mod.HEAD_REVISION


def test_reopening_keeps_target_and_logs_are_bounded(tmp_path: Path) -> None:
    s = Store(path=tmp_path / "db.sqlite", log_limit=50)
    s.save_target(source="test", document={"d": {"apps": {}}})
    for i in range(20):
        s.add_logs(records=[dict(ts_ms=i, app_uuid="", service="x", message=f"line {i}-{j}",
                                 is_system=False, is_stderr=False) for j in range(10)])
    s.close()
    again = Store(path=tmp_path / "db.sqlite", log_limit=50)
    stored = again.load_target()
    assert stored is not None and stored.document == {"d": {"apps": {}}}
    lines = again.logs(limit=1000)
    assert 50 <= len(lines) <= 60, "bounded to about log_limit lines"
    assert lines[-1].message == "line 19-9"
    newer = again.logs(after_id=lines[-2].id)
    assert [r.message for r in newer] == ["line 19-9"]
    assert [r.message for r in again.logs(service="nope")] == []


def test_log_bytes_are_capped(tmp_path: Path) -> None:
    s = Store(path=tmp_path / "db.sqlite", log_limit=100_000, log_bytes=50_000)
    for i in range(30):
        s.add_logs(records=[dict(ts_ms=i, app_uuid="", service="x", message="y" * 1000,
                                 is_system=False, is_stderr=False) for _ in range(10)])
    total = sum(len(r.message) for r in s.logs(limit=10_000))
    assert 40_000 <= total <= 51_000
    s.clear_logs()
    assert s.logs() == []
