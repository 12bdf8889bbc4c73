"""The push caps across server processes that share one PostgreSQL.

Each running push holds two session-level advisory locks on a database connection of its own:
one of its user's `per_user` slot keys and one of the server's `total` slot keys. A push that
finds all of its user's (or all of the server's) keys held elsewhere is refused, as within one
process. PostgreSQL frees the locks when the connection closes, so the pushes of a process
that died free their slots with it: no table to clean up, no lease to expire.

With SQLite there is only one process, and `PushSlots` alone counts."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

USER_CLASS = 0x45460000
"""key1 of a user's slot j is USER_CLASS + j (key2 is the user's id); 'EF' in the high bits."""
TOTAL_CLASS = 0x4545FFFF
"""key1 of the server's slots (key2 is the slot's number)."""
_TRY = sa.text("SELECT pg_try_advisory_lock(:k1, :k2)")


class ClusterFull(Exception):
    """All the keys of one kind are held: `who` is "user" or "server"."""

    def __init__(self, who: str) -> None:
        super().__init__(who)
        self.who = who


@dataclass
class ClusterClaim:
    """A push's locks; `release` (idempotent) closes their connection, which frees them."""

    conn: sa.Connection | None

    def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.invalidate()  # the connection really closes: PostgreSQL frees the locks
            conn.close()


class ClusterSlots:
    """Slots counted by PostgreSQL for all the server processes using it."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=NullPool)

    @classmethod
    def for_url(cls, url: str) -> ClusterSlots | None:
        return cls(url) if url.startswith("postgresql") else None

    def take(self, *, user_id: int, total: int, per_user: int) -> ClusterClaim:
        """Hold one of `user_id`'s and one of the server's slots, or raise `ClusterFull`
        (blocking: a connection and at most per_user + total statements)."""
        claim = ClusterClaim(conn=self.engine.connect())
        try:
            conn = claim.conn
            assert conn is not None
            if not _first_free(conn, [(USER_CLASS + j, user_id) for j in range(per_user)]):
                raise ClusterFull("user")
            if not _first_free(conn, [(TOTAL_CLASS, i) for i in range(total)]):
                raise ClusterFull("server")
            conn.commit()  # session-level locks outlive the transaction; end it
            return claim
        except BaseException:
            claim.release()
            raise

    def close(self) -> None:
        self.engine.dispose()


def _first_free(conn: sa.Connection, keys: list[tuple[int, int]]) -> bool:
    """Take the first of `keys` nobody holds; False when all are held."""
    return any(conn.execute(_TRY, {"k1": k1, "k2": k2}).scalar_one() for k1, k2 in keys)
