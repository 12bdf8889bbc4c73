"""The supervisor's SQLite store: last good target, per-app release state, images, keys, logs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine as SqlEngine

from edgefleet.device import tables as t

LOG_LIMIT = 10_000
PERSISTENT_LOG_LIMIT = 200_000
PERSISTENT_LOG_BYTES = 32 * 2**20


def now_ms() -> int:
    return int(time.time() * 1000)


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


HEAD_REVISION = "0001"
"""The newest migration; when the store is there already, alembic is not even imported
(it costs ~12 MB of the supervisor's RSS)."""


def _migrate(engine: SqlEngine) -> None:
    with engine.connect() as conn:
        try:
            current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.OperationalError:
            current = None
    if current == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(cfg).get_current_head()
        if current == head:
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Store:
    """Typed access to the store. Opening it runs pending migrations."""

    def __init__(self, *, path: str | Path, log_limit: int = LOG_LIMIT,
                 log_bytes: int = PERSISTENT_LOG_BYTES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log_limit = log_limit
        self.log_bytes = log_bytes
        self.engine = sa.create_engine(f"sqlite:///{self.path}")
        sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        _migrate(self.engine)
        self._log_writes = 0
        self._log_written_bytes = 0

    def close(self) -> None:
        self.engine.dispose()

    # --- config ----------------------------------------------------------------------------
    def get_config(self, *, key: str) -> str | None:
        with self.engine.connect() as c:
            return c.execute(sa.select(t.config.c.value).where(t.config.c.key == key)).scalar()

    def set_config(self, *, key: str, value: str) -> None:
        with self.engine.begin() as c:
            c.execute(t.config.delete().where(t.config.c.key == key))
            c.execute(t.config.insert().values(key=key, value=value))

    # --- target ----------------------------------------------------------------------------
    def save_target(self, *, source: str, document: dict[str, Any]) -> None:
        """Replace the last good target (call only after it validated)."""
        with self.engine.begin() as c:
            c.execute(t.target.delete())
            c.execute(t.target.insert().values(id=1, source=source, document=json.dumps(
                document), stored_at_ms=now_ms()))

    def load_target(self) -> StoredTarget | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.target)).first()
        if row is None:
            return None
        return StoredTarget(source=row.source, document=json.loads(row.document),
                            stored_at_ms=row.stored_at_ms)

    # --- apps ------------------------------------------------------------------------------
    def set_app(self, *, uuid: str, app_id: int, commit: str | None, release_id: int | None,
                update_status: str, status_message: str = "") -> None:
        with self.engine.begin() as c:
            c.execute(t.app.delete().where(t.app.c.uuid == uuid))
            c.execute(t.app.insert().values(uuid=uuid, app_id=app_id, commit=commit,
                                            release_id=release_id, update_status=update_status,
                                            status_message=status_message))

    def apps(self) -> list[AppRecord]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.app).order_by(t.app.c.uuid)).all()
        return [AppRecord(r.uuid, r.app_id, r.commit, r.release_id, r.update_status,
                          r.status_message) for r in rows]

    def delete_apps_except(self, *, keep: set[str]) -> None:
        with self.engine.begin() as c:
            c.execute(t.app.delete().where(t.app.c.uuid.not_in(keep)))

    # --- images ----------------------------------------------------------------------------
    def set_image(self, *, ref: str, app_uuid: str, service_name: str, status: str,
                  image_id: str | None = None, downloaded: int = 0, total: int = 0,
                  error: str = "") -> None:
        with self.engine.begin() as c:
            c.execute(t.image.delete().where(t.image.c.ref == ref))
            c.execute(t.image.insert().values(ref=ref, image_id=image_id, app_uuid=app_uuid,
                                              service_name=service_name, status=status,
                                              downloaded=downloaded, total=total, error=error))

    def images(self) -> list[ImageRecord]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.image).order_by(t.image.c.ref)).all()
        return [ImageRecord(r.ref, r.image_id, r.app_uuid, r.service_name, r.status,
                            r.downloaded, r.total, r.error) for r in rows]

    def delete_image(self, *, ref: str) -> None:
        with self.engine.begin() as c:
            c.execute(t.image.delete().where(t.image.c.ref == ref))

    # --- api keys --------------------------------------------------------------------------
    def api_key(self, *, app_uuid: str) -> str | None:
        """`app_uuid` "" is the global key."""
        with self.engine.connect() as c:
            return c.execute(sa.select(t.api_secret.c.key).where(
                t.api_secret.c.app_uuid == app_uuid)).scalar()

    def set_api_key(self, *, app_uuid: str, key: str) -> None:
        with self.engine.begin() as c:
            c.execute(t.api_secret.delete().where(t.api_secret.c.app_uuid == app_uuid))
            c.execute(t.api_secret.insert().values(app_uuid=app_uuid, key=key))

    def api_keys(self) -> dict[str, str]:
        with self.engine.connect() as c:
            return {r.app_uuid: r.key for r in c.execute(sa.select(t.api_secret))}

    # --- logs ------------------------------------------------------------------------------
    def add_logs(self, *, records: list[dict[str, Any]]) -> None:
        """Append log lines (dicts with ts_ms, app_uuid, service, message, is_system,
        is_stderr); keeps only the newest `log_limit` lines."""
        if not records:
            return
        with self.engine.begin() as c:
            c.execute(t.log.insert(), records)
            self._log_writes += len(records)
            self._log_written_bytes += sum(len(r.get("message", "")) for r in records)
            if self._log_writes >= max(1, min(self.log_limit // 10, 1000)) or (
                self._log_written_bytes >= self.log_bytes // 10
            ):
                self._log_writes = self._log_written_bytes = 0
                top = c.execute(sa.select(sa.func.max(t.log.c.id))).scalar() or 0
                c.execute(t.log.delete().where(t.log.c.id <= top - self.log_limit))
                self._trim_bytes(c)

    def _trim_bytes(self, c: sa.Connection) -> None:
        """Drop the oldest lines while the log holds more than `log_bytes` of messages."""
        size = c.execute(sa.select(sa.func.sum(sa.func.length(t.log.c.message)))).scalar() or 0
        if size <= self.log_bytes:
            return
        excess = size - self.log_bytes
        cutoff, dropped = 0, 0
        rows = c.execute(sa.select(t.log.c.id, sa.func.length(t.log.c.message))
                         .order_by(t.log.c.id)).yield_per(5000)
        for row_id, length in rows:
            dropped += length or 0
            cutoff = row_id
            if dropped >= excess:
                break
        c.execute(t.log.delete().where(t.log.c.id <= cutoff))

    def clear_logs(self) -> None:
        """Forget every log line (a device without persistent logging, at start)."""
        with self.engine.begin() as c:
            c.execute(t.log.delete())

    def logs(self, *, after_id: int = 0, service: str | None = None,
             limit: int = 1000) -> list[LogRecord]:
        """Log lines with id > after_id, oldest first."""
        q = sa.select(t.log).where(t.log.c.id > after_id)
        if service:
            q = q.where(t.log.c.service == service)
        q = q.order_by(t.log.c.id.desc()).limit(limit)
        with self.engine.connect() as c:
            rows = list(reversed(c.execute(q).all()))
        return [LogRecord(r.id, r.ts_ms, r.app_uuid, r.service, r.message, r.is_system,
                          r.is_stderr) for r in rows]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
