"""The store: migrations (and adopting a store made by Alembic), last good target, bounded logs."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.device import store_schema
from edgefleet.device.store import Store, StoreError

OLD_DUMP = Path(__file__).parent / "fixtures" / "store_alembic_0001.sql"


def _old_store(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(OLD_DUMP.read_text())
    db.close()


def _schema(path: Path) -> dict[str, str]:
    db = sqlite3.connect(path)
    rows = db.execute("SELECT name, sql FROM sqlite_master WHERE type='table' "
                      "AND name != 'alembic_version'").fetchall()
    db.close()
    return {name: re.sub(r"\s+", " ", sql) for name, sql in rows}


def test_store_made_by_alembic_0001_is_adopted_without_data_loss(tmp_path: Path) -> None:
    path = tmp_path / "edgefleet.sqlite"
    _old_store(path)
    s = Store(path=path)
    assert s.get_config(key="deviceName") == "old-device"
    target = s.load_target()
    assert target is not None and target.source == "cloud"
    assert target.document == {"local": {"name": "x"}, "apps": {}}
    assert [(a.uuid, a.app_id, a.commit, a.release_id, a.update_status, a.status_message)
            for a in s.apps()] == [("app1", 7, "abc", 3, "done", "ok"),
                                   ("app2", 8, None, None, "idle", "")]
    (img,) = s.images()
    assert (img.ref, img.image_id, img.downloaded, img.total) == ("reg/img:1", "sha256:1", 10, 10)
    assert s.api_keys() == {"": "globalkey", "app1": "appkey"}
    logs = s.logs()
    assert [(r.id, r.message, r.is_system, r.is_stderr) for r in logs] == [
        (1, "line 0", True, False), (2, "line 1", False, True), (3, "line 2", False, False)]
    s.add_logs(records=[dict(ts_ms=5, app_uuid="app1", service="web", message="new",
                             is_system=False, is_stderr=False)])
    assert s.logs(after_id=3)[0].id == 4, "ids go on after the adopted ones"
    s.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == store_schema.VERSION
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0001"
    db.close()


def test_fresh_store_has_the_schema_alembic_0001_made(tmp_path: Path) -> None:
    _old_store(tmp_path / "old.sqlite")
    Store(path=tmp_path / "new.sqlite").close()
    assert _schema(tmp_path / "new.sqlite") == _schema(tmp_path / "old.sqlite")
    db = sqlite3.connect(tmp_path / "new.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_store_of_a_newer_or_unknown_schema_is_refused_unchanged(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    Store(path=newer).close()
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {store_schema.VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this supervisor"):
        Store(path=newer)
    unknown = tmp_path / "unknown.sqlite"
    _old_store(unknown)
    db = sqlite3.connect(unknown)
    db.execute("UPDATE alembic_version SET version_num = '0099'")
    db.commit()
    db.close()
    before = _schema(unknown)
    with pytest.raises(StoreError, match="unknown store revision '0099'"):
        Store(path=unknown)
    assert _schema(unknown) == before
    db = sqlite3.connect(unknown)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()


def test_opening_the_store_imports_no_sqlalchemy_or_alembic(tmp_path: Path) -> None:
    code = ("import sys; from edgefleet.device.store import Store; "
            f"Store(path={str(tmp_path / 's.sqlite')!r}).close(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sqlalchemy', 'alembic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


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
