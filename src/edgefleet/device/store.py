"""The supervisor's SQLite store (stdlib sqlite3): last good target, per-app release state,
images, keys, logs. Schema and migrations in `device/store_schema.py`."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.device.store_schema import VERSION, StoreError, migrate
from edgefleet.model.timeutil import now_ms

__all__ = ["VERSION", "AppRecord", "ImageRecord", "LogRecord", "Store", "StoreError",
           "StoredTarget"]

LOG_LIMIT = 10_000
PERSISTENT_LOG_LIMIT = 200_000
PERSISTENT_LOG_BYTES = 32 * 2**20


@dataclass(frozen=True)
class StoredTarget:
    """The last good target state document and where it came from."""

    source: str
    """`cloud`, `apps.json` or `local`."""
    document: dict[str, Any]
    stored_at_ms: int


@dataclass(frozen=True)
class AppRecord:
    uuid: str
    app_id: int
    commit: str | None
    release_id: int | None
    update_status: str
    status_message: str


@dataclass(frozen=True)
class ImageRecord:
    ref: str
    image_id: str | None
    app_uuid: str
    service_name: str
    status: str
    downloaded: int
    total: int
    error: str


@dataclass(frozen=True)
class LogRecord:
    id: int
    ts_ms: int
    app_uuid: str
    service: str
    message: str
    is_system: bool
    is_stderr: bool


def _private(path: Path) -> None:
    """Create the database 0600 (it holds API keys; SQLite gives its -wal and -shm files the
    same mode) and narrow a store written before that."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and p.stat().st_mode & 0o077:
            os.chmod(p, 0o600)


class Store:
    """Typed access to the store. Opening it runs pending migrations."""

    def __init__(self, *, path: str | Path, log_limit: int = LOG_LIMIT,
                 log_bytes: int = PERSISTENT_LOG_BYTES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private(self.path)
        self.log_limit = log_limit
        self.log_bytes = log_bytes
        # One connection shared by the event loop and the odd worker thread, serialised here.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        try:
            migrate(db=self._db, path=str(self.path))
        except BaseException:
            self._db.close()
            raise
        self._log_writes = 0
        self._log_written_bytes = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (taken at once, so writers queue on busy_timeout)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        rows = self._rows(sql, args)
        return rows[0][0] if rows else None

    # --- config ----------------------------------------------------------------------------
    def get_config(self, *, key: str) -> str | None:
        value = self._one('SELECT value FROM config WHERE "key" = ?', (key,))
        return None if value is None else str(value)

    def set_config(self, *, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute('INSERT OR REPLACE INTO config ("key", value) VALUES (?, ?)', (key, value))

    # --- target ----------------------------------------------------------------------------
    def save_target(self, *, source: str, document: dict[str, Any]) -> None:
        """Replace the last good target (call only after it validated)."""
        with self._tx() as c:
            c.execute("DELETE FROM target")
            c.execute("INSERT INTO target (id, source, document, stored_at_ms) "
                      "VALUES (1, ?, ?, ?)", (source, json.dumps(document), now_ms()))

    def load_target(self) -> StoredTarget | None:
        rows = self._rows("SELECT source, document, stored_at_ms FROM target LIMIT 1")
        if not rows:
            return None
        source, document, stored_at_ms = rows[0]
        return StoredTarget(source=source, document=json.loads(document),
                            stored_at_ms=stored_at_ms)

    # --- apps ------------------------------------------------------------------------------
    def set_app(self, *, uuid: str, app_id: int, commit: str | None, release_id: int | None,
                update_status: str, status_message: str = "") -> None:
        with self._tx() as c:
            c.execute('INSERT OR REPLACE INTO app (uuid, app_id, "commit", release_id, '
                      "update_status, status_message) VALUES (?, ?, ?, ?, ?, ?)",
                      (uuid, app_id, commit, release_id, update_status, status_message))

    def apps(self) -> list[AppRecord]:
        rows = self._rows('SELECT uuid, app_id, "commit", release_id, update_status, '
                          "status_message FROM app ORDER BY uuid")
        return [AppRecord(*r) for r in rows]

    def delete_apps_except(self, *, keep: set[str]) -> None:
        marks = ", ".join("?" * len(keep))
        with self._tx() as c:
            c.execute(f"DELETE FROM app WHERE uuid NOT IN ({marks})", tuple(keep))

    # --- images ----------------------------------------------------------------------------
    def set_image(self, *, ref: str, app_uuid: str, service_name: str, status: str,
                  image_id: str | None = None, downloaded: int = 0, total: int = 0,
                  error: str = "") -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO image (ref, image_id, app_uuid, service_name, "
                      "status, downloaded, total, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (ref, image_id, app_uuid, service_name, status, downloaded, total, error))

    def images(self) -> list[ImageRecord]:
        rows = self._rows("SELECT ref, image_id, app_uuid, service_name, status, downloaded, "
                          "total, error FROM image ORDER BY ref")
        return [ImageRecord(*r) for r in rows]

    def delete_image(self, *, ref: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM image WHERE ref = ?", (ref,))

    # --- api keys --------------------------------------------------------------------------
    def api_key(self, *, app_uuid: str) -> str | None:
        """`app_uuid` "" is the global key."""
        key = self._one('SELECT "key" FROM api_secret WHERE app_uuid = ?', (app_uuid,))
        return None if key is None else str(key)

    def set_api_key(self, *, app_uuid: str, key: str) -> None:
        with self._tx() as c:
            c.execute('INSERT OR REPLACE INTO api_secret (app_uuid, "key") VALUES (?, ?)',
                      (app_uuid, key))

    def api_keys(self) -> dict[str, str]:
        return {str(a): str(k) for a, k in self._rows('SELECT app_uuid, "key" FROM api_secret')}

    # --- logs ------------------------------------------------------------------------------
    def add_logs(self, *, records: list[dict[str, Any]]) -> None:
        """Append log lines (dicts with ts_ms, app_uuid, service, message, is_system,
        is_stderr); keeps only the newest `log_limit` lines."""
        if not records:
            return
        rows = [(int(r["ts_ms"]), r.get("app_uuid", ""), r.get("service", ""), r["message"],
                 bool(r["is_system"]), bool(r["is_stderr"])) for r in records]
        with self._tx() as c:
            c.executemany("INSERT INTO log (ts_ms, app_uuid, service, message, is_system, "
                          "is_stderr) VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._log_writes += len(records)
            self._log_written_bytes += sum(len(r.get("message", "")) for r in records)
            if self._log_writes >= max(1, min(self.log_limit // 10, 1000)) or (
                self._log_written_bytes >= self.log_bytes // 10
            ):
                self._log_writes = self._log_written_bytes = 0
                top = c.execute("SELECT max(id) FROM log").fetchone()[0] or 0
                c.execute("DELETE FROM log WHERE id <= ?", (top - self.log_limit,))
                self._trim_bytes(c)

    def _trim_bytes(self, c: sqlite3.Connection) -> None:
        """Drop the oldest lines while the log holds more than `log_bytes` of messages."""
        size = c.execute("SELECT sum(length(message)) FROM log").fetchone()[0] or 0
        if size <= self.log_bytes:
            return
        excess = size - self.log_bytes
        cutoff, dropped = 0, 0
        cur = c.execute("SELECT id, length(message) FROM log ORDER BY id")
        try:
            for row_id, length in cur:
                dropped += length or 0
                cutoff = row_id
                if dropped >= excess:
                    break
        finally:
            cur.close()
        c.execute("DELETE FROM log WHERE id <= ?", (cutoff,))

    def clear_logs(self) -> None:
        """Forget every log line (a device without persistent logging, at start)."""
        with self._tx() as c:
            c.execute("DELETE FROM log")

    def logs(self, *, after_id: int = 0, service: str | None = None,
             limit: int = 1000) -> list[LogRecord]:
        """Log lines with id > after_id, oldest first."""
        where = "id > ?"
        args: list[Any] = [after_id]
        if service:
            where += " AND service = ?"
            args.append(service)
        rows = self._rows("SELECT id, ts_ms, app_uuid, service, message, is_system, is_stderr "
                          f"FROM log WHERE {where} ORDER BY id DESC LIMIT ?",
                          (*args, limit))
        return [LogRecord(i, ts, a, s, m, bool(sy), bool(se))
                for i, ts, a, s, m, sy, se in reversed(rows)]
