"""The container engine as the supervisor sees it: the seam between executor and engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from edgefleet.model.engine_events import EngineEvent, LogLine, PullProgress
from edgefleet.model.engine_state import EngineState
from edgefleet.model.service import NetworkAttachment, NetworkSpec, ServiceSpec, VolumeSpec

__all__ = ["Engine", "EngineEvent", "LogLine", "PullProgress"]


class Engine(Protocol):
    """What the executor and loop need from an engine (`engine.docker.DockerEngine`)."""

    async def observe(self) -> EngineState: ...

    async def pull(
        self,
        image: str,
        *,
        auth: dict[str, str] | None = None,
        progress: Callable[[PullProgress], None] | None = None,
    ) -> str: ...

    async def create_container(self, spec: ServiceSpec, *,
                               network_from: str | None = None) -> str: ...

    async def connect_network(self, network: str, *, container: str,
                              attachment: NetworkAttachment) -> None: ...

    async def start_container(self, ref: str) -> None: ...

    async def stop_container(self, ref: str, *, timeout_s: float) -> None: ...

    async def restart_container(self, ref: str, *, timeout_s: float) -> None: ...

    async def remove_container(self, ref: str, *, force: bool = False) -> None: ...

    async def rename_container(self, ref: str, *, new_name: str) -> None: ...

    async def create_network(self, spec: NetworkSpec) -> None: ...

    async def remove_network(self, name: str) -> None: ...

    async def create_volume(self, spec: VolumeSpec) -> None: ...

    async def remove_volume(self, name: str) -> None: ...

    async def remove_image(self, image_id: str) -> None: ...

    def events(self) -> AsyncIterator[EngineEvent]: ...

    def logs(
        self, ref: str, *, follow: bool, since_s: float = 0
    ) -> AsyncIterator[LogLine]: ...

    async def close(self) -> None: ...
