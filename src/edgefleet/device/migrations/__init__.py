"""Alembic migrations of the supervisor's SQLite store."""
