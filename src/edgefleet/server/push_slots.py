"""How many pushes the server runs at once, in all and per user.

A push holds a slot from before its upload is read until its work directory is gone (upload,
unpack, build, image push). A push beyond a cap is refused before a byte of it is read: 429
when the user already runs their share, 503 when the server is full; both with `Retry-After`.
The pushes already running are not touched. Each process counts its own pushes; processes
sharing a PostgreSQL also count each other's (`push_cluster`), so the caps hold for the whole
server however many processes serve it."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from edgefleet.server.push_cluster import ClusterClaim, ClusterFull, ClusterSlots

RETRY_AFTER_S = 30
"""What a refused push is told to wait (a push usually takes longer than one poll)."""


@dataclass
class PushSlot:
    """One running push's claim; `release` is idempotent."""

    slots: PushSlots
    user_id: int
    held: bool = True
    cluster: ClusterClaim | None = None

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slots.give_back(self.user_id)
            if self.cluster is not None:
                self.cluster.release()


@dataclass
class PushSlots:
    """The pushes running in this process, counted per user (the event loop's thread only),
    and, with PostgreSQL, those of every process (`cluster`)."""

    per_user: dict[int, int] = field(default_factory=dict)
    cluster: ClusterSlots | None = None

    @property
    def running(self) -> int:
        return sum(self.per_user.values())

    def take(self, *, user_id: int, total: int, per_user: int) -> PushSlot:
        """A slot for one push of `user_id` in this process, or an HTTPException (429 or 503)
        saying why."""
        mine = self.per_user.get(user_id, 0)
        if mine >= per_user:
            raise user_full(per_user)
        if self.running >= total:
            raise server_full(total)
        self.per_user[user_id] = mine + 1
        return PushSlot(slots=self, user_id=user_id)

    async def claim(self, *, user_id: int, total: int, per_user: int) -> PushSlot:
        """`take`, then (with PostgreSQL) the same caps counted across all the processes."""
        slot = self.take(user_id=user_id, total=total, per_user=per_user)
        if self.cluster is None:
            return slot
        try:
            slot.cluster = await run_in_threadpool(self.cluster.take, user_id=user_id,
                                                   total=total, per_user=per_user)
        except ClusterFull as full:
            slot.release()
            raise (user_full if full.who == "user" else server_full)(
                per_user if full.who == "user" else total) from None
        except BaseException:
            slot.release()
            raise
        return slot

    def give_back(self, user_id: int) -> None:
        left = self.per_user.get(user_id, 0) - 1
        if left > 0:
            self.per_user[user_id] = left
        else:
            self.per_user.pop(user_id, None)


def user_full(per_user: int) -> HTTPException:
    return HTTPException(429, (
        f"you already have {per_user} push(es) in progress, the most this server runs at "
        f"once for one user (--max-pushes-per-user {per_user}); nothing of this push was "
        f"kept: push again when one of them has finished (in about {RETRY_AFTER_S} s)"),
        headers={"Retry-After": str(RETRY_AFTER_S)})


def server_full(total: int) -> HTTPException:
    return HTTPException(503, (
        f"the server is already running {total} pushes, the most it runs at once "
        f"(--max-pushes {total}); nothing of this push was kept: push again in about "
        f"{RETRY_AFTER_S} s"), headers={"Retry-After": str(RETRY_AFTER_S)})
