"""The supervisor store's schema and its migrations (stdlib sqlite3, `PRAGMA user_version`).

Version 1 is the schema that the Alembic migration 0001 created (same DDL, same file): a store
made by it (it has an `alembic_version` table at 0001) is adopted as version 1 without change.
The `alembic_version` table is left in place, so an older supervisor still opens the store."""

from __future__ import annotations

import sqlite3

V1 = (
    """CREATE TABLE config (
	"key" VARCHAR NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY ("key")
)""",
    """CREATE TABLE target (
	id INTEGER NOT NULL,
	source VARCHAR NOT NULL,
	document TEXT NOT NULL,
	stored_at_ms BIGINT NOT NULL,
	PRIMARY KEY (id)
)""",
    """CREATE TABLE app (
	uuid VARCHAR NOT NULL,
	app_id INTEGER NOT NULL,
	"commit" VARCHAR,
	release_id INTEGER,
	update_status VARCHAR NOT NULL,
	status_message TEXT DEFAULT '' NOT NULL,
	PRIMARY KEY (uuid)
)""",
    """CREATE TABLE image (
	ref VARCHAR NOT NULL,
	image_id VARCHAR,
	app_uuid VARCHAR NOT NULL,
	service_name VARCHAR NOT NULL,
	status VARCHAR NOT NULL,
	downloaded BIGINT DEFAULT '0' NOT NULL,
	total BIGINT DEFAULT '0' NOT NULL,
	error TEXT DEFAULT '' NOT NULL,
	PRIMARY KEY (ref)
)""",
    """CREATE TABLE api_secret (
	app_uuid VARCHAR NOT NULL,
	"key" VARCHAR NOT NULL,
	PRIMARY KEY (app_uuid)
)""",
    """CREATE TABLE log (
	id INTEGER NOT NULL,
	ts_ms BIGINT NOT NULL,
	app_uuid VARCHAR DEFAULT '' NOT NULL,
	service VARCHAR DEFAULT '' NOT NULL,
	message TEXT NOT NULL,
	is_system BOOLEAN NOT NULL,
	is_stderr BOOLEAN NOT NULL,
	PRIMARY KEY (id)
)""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (V1,)
"""Migration N (1-based) brings `user_version` N-1 to N; append new ones, never edit old."""
VERSION = len(MIGRATIONS)
ALEMBIC_ADOPTED = {"0001": 1}
"""Alembic revisions of the older store and the schema version each one equals."""


class StoreError(Exception):
    """The store file cannot be used by this supervisor (made by a newer one, or unknown)."""


def _alembic_revision(db: sqlite3.Connection) -> str | None:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
                  ).fetchone() is None:
        return None
    row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def migrate(*, db: sqlite3.Connection, path: str) -> None:
    """Bring the store to `VERSION` in one transaction (adopting an Alembic-made store)."""
    if db.execute("PRAGMA user_version").fetchone()[0] == VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            revision = _alembic_revision(db)
            if revision is not None:
                if revision not in ALEMBIC_ADOPTED:
                    raise StoreError(f"{path}: unknown store revision {revision!r} (made by "
                                     "another supervisor version); move it away to start afresh")
                version = ALEMBIC_ADOPTED[revision]
        if version > VERSION:
            raise StoreError(f"{path}: store schema {version} is newer than this supervisor's "
                             f"({VERSION}); run the newer supervisor or move the store away")
        for statements in MIGRATIONS[version:]:
            for sql in statements:
                db.execute(sql)
        db.execute(f"PRAGMA user_version = {VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
