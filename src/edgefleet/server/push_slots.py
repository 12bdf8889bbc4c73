"""How many pushes this server process runs at once, in all and per user.

A push holds a slot from before its upload is read until its work directory is gone (upload,
unpack, build, image push). A push beyond a cap is refused before a byte of it is read: 429
when the user already runs their share, 503 when the server is full; both with `Retry-After`.
The pushes already running are not touched."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException

RETRY_AFTER_S = 30
"""What a refused push is told to wait (a push usually takes longer than one poll)."""


@dataclass
class PushSlot:
    """One running push's claim; `release` is idempotent."""

    slots: PushSlots
    user_id: int
    held: bool = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slots.give_back(self.user_id)


@dataclass
class PushSlots:
    """The pushes running in this process, counted per user (the event loop's thread only)."""

    per_user: dict[int, int] = field(default_factory=dict)

    @property
    def running(self) -> int:
        return sum(self.per_user.values())

    def take(self, *, user_id: int, total: int, per_user: int) -> PushSlot:
        """A slot for one push of `user_id`, or an HTTPException (429 or 503) saying why."""
        mine = self.per_user.get(user_id, 0)
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        if mine >= per_user:
            raise HTTPException(429, (
                f"you already have {mine} push(es) in progress, the most this server runs at "
                f"once for one user (--max-pushes-per-user {per_user}); nothing of this push "
                f"was kept: push again when one of them has finished (in about "
                f"{RETRY_AFTER_S} s)"), headers=retry)
        if self.running >= total:
            raise HTTPException(503, (
                f"the server is already running {self.running} pushes, the most it runs at "
                f"once (--max-pushes {total}); nothing of this push was kept: push again in "
                f"about {RETRY_AFTER_S} s"), headers=retry)
        self.per_user[user_id] = mine + 1
        return PushSlot(slots=self, user_id=user_id)

    def give_back(self, user_id: int) -> None:
        left = self.per_user.get(user_id, 0) - 1
        if left > 0:
            self.per_user[user_id] = left
        else:
            self.per_user.pop(user_id, None)
