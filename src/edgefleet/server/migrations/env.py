"""Alembic environment of the fleet server: runs on the connection `db.migrate` hands over."""

from alembic import context

from edgefleet.server import org_tables  # noqa: F401  (its tables join the metadata)
from edgefleet.server.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
