"""Opening the server's database (SQLite or PostgreSQL) and bringing its schema up to date."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server import org_tables  # noqa: F401  (its tables join the metadata)
from edgefleet.server import tables as t


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    if isinstance(dbapi_conn, sqlite3.Connection):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def private_file(path: Path) -> None:
    """Make `path` (created empty if missing) readable by its owner only; SQLite gives its
    -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


def open_engine(*, url: str) -> Engine:
    """An engine for `url` with SQLite tuned for many small writes (WAL, NORMAL sync)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            private_file(Path(path))
        engine = sa.create_engine(url, connect_args={"check_same_thread": False},
                                  pool_size=8, max_overflow=8)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def migrate(*, engine: Engine) -> None:
    """Run pending Alembic migrations (the server's own tree, `server/migrations`)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with Session(engine) as s, s.begin():
        for key in ("generation", "keys"):
            if s.get(t.Meta, key) is None:
                s.add(t.Meta(key=key, value=1))


class Database:
    """The engine plus a session factory; `session()` commits on success."""

    def __init__(self, *, url: str) -> None:
        self.url = url
        self.engine = open_engine(url=url)
        migrate(engine=self.engine)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self.write_lock = threading.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed when the block ends, rolled back on error."""
        with self._factory() as s, s.begin():
            yield s

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session for writes; on SQLite, one writer per process at a time (no busy waits
        between this process's threads)."""
        if not self.is_sqlite:
            with self.session() as s:
                yield s
            return
        with self.write_lock, self.session() as s:
            yield s

    def bump_generation(self, s: Session, *, keys: bool = False) -> None:
        """Mark that some target may have changed (seen by every API process); `keys` also
        marks that a key was revoked (a device or fleet removed)."""
        names = ["generation", "keys"] if keys else ["generation"]
        s.execute(sa.update(t.Meta).where(t.Meta.key.in_(names))
                  .values(value=t.Meta.value + 1))

    def generations(self) -> tuple[int, int]:
        """(target generation, key generation)."""
        with self._factory() as s:
            rows = {k: v for k, v in s.execute(sa.select(t.Meta.key, t.Meta.value)).all()}
        return int(rows.get("generation", 0)), int(rows.get("keys", 0))

    def close(self) -> None:
        self.engine.dispose()
