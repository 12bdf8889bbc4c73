"""Initial supervisor store: config, target, app, image, api_secret, log.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table("config", sa.Column("key", sa.String, primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table("target", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("source", sa.String, nullable=False),
                    sa.Column("document", sa.Text, nullable=False),
                    sa.Column("stored_at_ms", sa.BigInteger, nullable=False))
    op.create_table("app", sa.Column("uuid", sa.String, primary_key=True),
                    sa.Column("app_id", sa.Integer, nullable=False),
                    sa.Column("commit", sa.String),
                    sa.Column("release_id", sa.Integer),
                    sa.Column("update_status", sa.String, nullable=False),
                    sa.Column("status_message", sa.Text, nullable=False, server_default=""))
    op.create_table("image", sa.Column("ref", sa.String, primary_key=True),
                    sa.Column("image_id", sa.String),
                    sa.Column("app_uuid", sa.String, nullable=False),
                    sa.Column("service_name", sa.String, nullable=False),
                    sa.Column("status", sa.String, nullable=False),
                    sa.Column("downloaded", sa.BigInteger, nullable=False, server_default="0"),
                    sa.Column("total", sa.BigInteger, nullable=False, server_default="0"),
                    sa.Column("error", sa.Text, nullable=False, server_default=""))
    op.create_table("api_secret", sa.Column("app_uuid", sa.String, primary_key=True),
                    sa.Column("key", sa.String, nullable=False))
    op.create_table("log", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("ts_ms", sa.BigInteger, nullable=False),
                    sa.Column("app_uuid", sa.String, nullable=False, server_default=""),
                    sa.Column("service", sa.String, nullable=False, server_default=""),
                    sa.Column("message", sa.Text, nullable=False),
                    sa.Column("is_system", sa.Boolean, nullable=False),
                    sa.Column("is_stderr", sa.Boolean, nullable=False))


def downgrade() -> None:
    for table in ("log", "api_secret", "image", "app", "target", "config"):
        op.drop_table(table)
