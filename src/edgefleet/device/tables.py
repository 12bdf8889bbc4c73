"""The supervisor store's tables (SQLAlchemy Core); migrations in `device/migrations`."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

config = sa.Table("config", metadata, sa.Column("key", sa.String, primary_key=True),
                  sa.Column("value", sa.Text, nullable=False))
target = sa.Table("target", metadata, sa.Column("id", sa.Integer, primary_key=True),
                  sa.Column("source", sa.String, nullable=False),
                  sa.Column("document", sa.Text, nullable=False),
                  sa.Column("stored_at_ms", sa.BigInteger, nullable=False))
app = sa.Table("app", metadata, sa.Column("uuid", sa.String, primary_key=True),
               sa.Column("app_id", sa.Integer, nullable=False),
               sa.Column("commit", sa.String), sa.Column("release_id", sa.Integer),
               sa.Column("update_status", sa.String, nullable=False),
               sa.Column("status_message", sa.Text, nullable=False, server_default=""))
image = sa.Table("image", metadata, sa.Column("ref", sa.String, primary_key=True),
                 sa.Column("image_id", sa.String),
                 sa.Column("app_uuid", sa.String, nullable=False),
                 sa.Column("service_name", sa.String, nullable=False),
                 sa.Column("status", sa.String, nullable=False),
                 sa.Column("downloaded", sa.BigInteger, nullable=False, server_default="0"),
                 sa.Column("total", sa.BigInteger, nullable=False, server_default="0"),
                 sa.Column("error", sa.Text, nullable=False, server_default=""))
api_secret = sa.Table("api_secret", metadata, sa.Column("app_uuid", sa.String, primary_key=True),
                      sa.Column("key", sa.String, nullable=False))
log = sa.Table("log", metadata,
               sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
               sa.Column("ts_ms", sa.BigInteger, nullable=False),
               sa.Column("app_uuid", sa.String, nullable=False, server_default=""),
               sa.Column("service", sa.String, nullable=False, server_default=""),
               sa.Column("message", sa.Text, nullable=False),
               sa.Column("is_system", sa.Boolean, nullable=False),
               sa.Column("is_stderr", sa.Boolean, nullable=False))
