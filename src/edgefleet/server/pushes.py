"""`POST /api/v1/fleets/{fleet}/releases`: take an uploaded project, record a release, build
it in the background and stream the build's events (NDJSON) to the caller."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid as uuidlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
import yaml
from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from edgefleet.model.errors import InvalidInput
from edgefleet.model.formats import release_from_compose, validate
from edgefleet.model.target import AppTarget, DeviceTarget, TargetState
from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.access import user_fleet
from edgefleet.server.builder import BuildFailed, BuildTarget, build_project
from edgefleet.server.devicetypes import arch_of
from edgefleet.server.project import MAX_UPLOAD, Project, load_project, template_values, unpack
from edgefleet.server.releases import SINGLE_SERVICE, fail_release, finish_release, start_release
from edgefleet.server.state import ServerState

log = logging.getLogger(__name__)
LOG_CAP = 1_000_000


async def read_upload(request: Request) -> bytes:
    """The request body, refused beyond MAX_UPLOAD bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD:
            raise HTTPException(413, f"the project is larger than {MAX_UPLOAD} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_composition(project: Project) -> None:
    """Reject a compose file the devices would refuse, before anything is built."""
    names = [b.service for b in project.builds] + list(project.images)
    placeholder = {n: f"placeholder/{n.lower()}:check" for n in names}
    compose = project.composition or {"services": {SINGLE_SERVICE: {}}}
    release = release_from_compose(compose_yaml=yaml.safe_dump(compose), images=placeholder)
    validate(target=TargetState(device_uuid="check", device=DeviceTarget(apps={
        "check": AppTarget(id=1, releases={"check": release})})))


class PushJob:
    """One push: prepares the release, then builds it in a task the client only watches."""

    def __init__(self, *, state: ServerState, user: keys.UserPrincipal, fleet: str) -> None:
        self.state = state
        self.user = user
        self.fleet_name = fleet
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.log_lines: list[str] = []
        self.workdir = state.settings.data_dir / "builds" / uuidlib.uuid4().hex

    def prepare(self, data: bytes) -> tuple[Project, int, BuildTarget, dict[str, str]]:
        """Unpack, check, and record the release as `building` (threadpool)."""
        settings = self.state.settings
        with self.state.db.session() as s:
            fleet = user_fleet(s, user=self.user, name=self.fleet_name)
            fleet_id, fleet_uuid, device_type = fleet.id, fleet.uuid, fleet.device_type
        self.workdir.mkdir(parents=True)
        try:
            unpack(data=data, into=self.workdir)
            project = load_project(root=self.workdir)
            check_composition(project)
        except InvalidInput as exc:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise HTTPException(400, str(exc)) from None
        if project.builds and not settings.registry:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise HTTPException(409, "this server has no registry to push built images to")
        with self.state.db.session() as s:
            row = s.get(t.Fleet, fleet_id)
            assert row is not None
            release = start_release(s, fleet=row, composition=project.composition)
            target = BuildTarget(registry=settings.registry or "", fleet_uuid=fleet_uuid,
                                 commit=release.commit)
            release_id = release.id
        subs = template_values(device_type=device_type, arch=arch_of(device_type) or "amd64")
        return project, release_id, target, subs

    async def emit(self, event: dict[str, Any]) -> None:
        if event.get("type") == "build":
            self.log_lines.append(f"[{event['service']}] {event['line']}")
        await self.queue.put(event)

    def record(self, release_id: int, images: Any, error: str) -> None:
        with self.state.db.session() as s:
            release = s.get(t.Release, release_id)
            assert release is not None
            release.build_log = "\n".join(self.log_lines)[-LOG_CAP:]
            if error:
                fail_release(s, release=release, error=error)
            else:
                finish_release(s, release=release, images=images)
                self.state.db.bump_generation(s)
        self.state.refresh_generation()

    async def run(self, project: Project, release_id: int, target: BuildTarget,
                  subs: dict[str, str]) -> None:
        error = ""
        images: Any = None
        try:
            images = await build_project(project=project, target=target, substitutions=subs,
                                         engine_socket=self.state.settings.engine_socket,
                                         emit=self.emit)
        except BuildFailed as exc:
            error = str(exc)
        except Exception as exc:  # the engine is away, the socket broke, ...
            log.exception("build of %s failed", target.commit)
            error = f"build failed: {exc}"
        try:
            await run_in_threadpool(self.record, release_id, images, error)
        except Exception as exc:
            log.exception("recording release %s failed", target.commit)
            error = error or f"recording the release failed: {exc}"
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        await self.queue.put({"type": "done", "commit": target.commit,
                              "status": "failed" if error else "success", "error": error})
        await self.queue.put(None)

    async def events(self, first: dict[str, Any]) -> AsyncIterator[bytes]:
        yield json.dumps(first).encode() + b"\n"
        while (event := await self.queue.get()) is not None:
            yield json.dumps(event).encode() + b"\n"


_running: set[asyncio.Task[None]] = set()


async def push(*, state: ServerState, user: keys.UserPrincipal, fleet: str,
               request: Request) -> StreamingResponse:
    """Start a push; the build goes on even if the client goes away."""
    data = await read_upload(request)
    job = PushJob(state=state, user=user, fleet=fleet)
    project, release_id, target, subs = await run_in_threadpool(job.prepare, data)
    task = asyncio.create_task(job.run(project, release_id, target, subs))
    _running.add(task)
    task.add_done_callback(_running.discard)
    first = {"type": "release", "commit": target.commit, "status": "building",
             "services": [b.service for b in project.builds] + list(project.images)}
    return StreamingResponse(job.events(first), media_type="application/x-ndjson")


def fail_interrupted(state: ServerState) -> None:
    """Releases left `building` by a server that stopped mid-build become `failed`."""
    with state.db.session() as s:
        for rel in s.execute(sa.select(t.Release).where(t.Release.status == "building")
                             ).scalars():
            fail_release(s, release=rel, error="the server stopped during the build")

