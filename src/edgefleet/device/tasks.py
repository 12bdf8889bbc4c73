"""Stopping background tasks the same way everywhere."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(*tasks: asyncio.Task[object] | asyncio.Future[object]) -> None:
    """Cancel `tasks` and wait until they have ended, ignoring how each ended. A cancellation
    of the caller itself still propagates (unlike `suppress(BaseException)` around an await)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
