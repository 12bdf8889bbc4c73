"""Follows the output of every running supervised container into the log store."""

from __future__ import annotations

import asyncio
import time

from edgefleet.device.engine_port import Engine
from edgefleet.device.logs import LogSink
from edgefleet.device.tasks import cancel_and_wait
from edgefleet.model.engine_state import EngineState


class LogFollowers:
    """One task per running container, started when it is first seen running."""

    def __init__(self, *, engine: Engine, logs: LogSink) -> None:
        self.engine = engine
        self.logs = logs
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def follow_running(self, observed: EngineState | None) -> None:
        """Start following containers that run and are not followed yet."""
        for c in observed.containers if observed is not None else ():
            if c.is_running and c.id not in self.tasks:
                self.tasks[c.id] = asyncio.create_task(self._follow(
                    c.id, app_uuid=c.app_uuid, service=c.service_name))

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        await cancel_and_wait(*tasks)

    async def _follow(self, container_id: str, *, app_uuid: str, service: str) -> None:
        try:
            async for line in self.engine.logs(container_id, follow=True, since_s=time.time()):
                self.logs.container(line.message, app_uuid=app_uuid, service=service,
                                    is_stderr=line.is_stderr, ts_ms=line.timestamp_ms)
        except asyncio.CancelledError:
            raise
        except Exception:
            pass
        finally:
            self.tasks.pop(container_id, None)
