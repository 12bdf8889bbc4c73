"""`POST /api/v1/fleets/{fleet}/releases`: take an uploaded project, record a release, build
it in the background and stream the build's events (NDJSON) to the caller."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
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
from edgefleet.server.project import Project, load_project, template_values
from edgefleet.server.push_slots import PushSlot
from edgefleet.server.releases import SINGLE_SERVICE, fail_release, finish_release, start_release
from edgefleet.server.state import ServerState
from edgefleet.server.unpack import Limits, TooLarge, unpack_file

log = logging.getLogger(__name__)
LOG_CAP = 1_000_000


async def receive_upload(request: Request, *, into: Path, limit: int) -> None:
    """Stream the request body to `into`; 413 beyond `limit` bytes (nothing in memory)."""
    size = 0
    with into.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the upload is larger than {limit // 2**20} MiB, "
                                         "more than this server accepts")
            out.write(chunk)


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

    def __init__(self, *, state: ServerState, user: keys.UserPrincipal, fleet: str,
                 slot: PushSlot) -> None:
        self.state = state
        self.slot = slot
        self.user = user
        self.fleet_name = fleet
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.log_lines: list[str] = []
        self.workdir = state.settings.data_dir / "builds" / uuidlib.uuid4().hex

    @property
    def limits(self) -> Limits:
        return Limits(max_bytes=self.state.settings.max_project_bytes)

    @property
    def upload(self) -> Path:
        return self.workdir / "upload"

    @property
    def root(self) -> Path:
        return self.workdir / "project"

    def find_fleet(self) -> tuple[int, str, str]:
        """The user's fleet (404 otherwise); makes the work directory (threadpool)."""
        with self.state.db.session() as s:
            fleet = user_fleet(s, user=self.user, name=self.fleet_name)
            found = fleet.id, fleet.uuid, fleet.device_type
        self.root.mkdir(parents=True)
        return found

    def prepare(self, fleet: tuple[int, str, str]
                ) -> tuple[Project, int, BuildTarget, dict[str, str]]:
        """Unpack, check, and record the release as `building` (threadpool)."""
        settings = self.state.settings
        fleet_id, fleet_uuid, device_type = fleet
        try:
            unpack_file(archive=self.upload, into=self.root, limits=self.limits)
            self.upload.unlink()
            project = load_project(root=self.root)
            check_composition(project)
        except TooLarge as exc:
            raise HTTPException(413, str(exc)) from None
        except InvalidInput as exc:
            raise HTTPException(400, str(exc)) from None
        except (ValueError, TypeError, RecursionError) as exc:
            detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise HTTPException(400, f"the project's compose file cannot be used: {detail}"
                                ) from None
        if project.builds and not settings.registry:
            raise HTTPException(409, "this server has no registry to push built images to")
        with self.state.db.session() as s:
            row = s.get(t.Fleet, fleet_id)
            if row is None:
                raise HTTPException(404, f"no fleet {self.fleet_name!r}")
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
        """Record the outcome; once more when a push of the same fleet running beside this
        one added the same new service first (a unique conflict, committed by then)."""
        try:
            self._record(release_id, images, error)
        except sa.exc.IntegrityError:
            self._record(release_id, images, error)

    def _record(self, release_id: int, images: Any, error: str) -> None:
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
        try:
            error = await self.build(project, release_id, target, subs)
        finally:  # whatever happened, even cancellation at shutdown
            try:
                await asyncio.shield(asyncio.to_thread(shutil.rmtree, self.workdir, True))
            finally:
                self.slot.release()
        await self.queue.put({"type": "done", "commit": target.commit,
                              "status": "failed" if error else "success", "error": error})
        await self.queue.put(None)

    async def build(self, project: Project, release_id: int, target: BuildTarget,
                    subs: dict[str, str]) -> str:
        """Build, push and record the release; returns the error ("" on success)."""
        error = ""
        images: Any = None
        timeout = self.state.settings.build_timeout_s
        try:
            images = await asyncio.wait_for(build_project(
                project=project, target=target, substitutions=subs,
                engine_socket=self.state.settings.engine_socket, emit=self.emit),
                timeout=timeout)
        except BuildFailed as exc:
            error = str(exc)
        except TimeoutError:
            error = f"the build took longer than {timeout:g} s and was stopped"
        except InvalidInput as exc:  # e.g. a .dockerignore too costly to match
            error = str(exc)
        except Exception as exc:  # the engine is away, the socket broke, ...
            log.exception("build of %s failed", target.commit)
            error = f"build failed: {exc}"
        try:
            await run_in_threadpool(self.record, release_id, images, error)
        except Exception as exc:
            log.exception("recording release %s failed", target.commit)
            error = error or f"recording the release failed: {exc}"
        return error

    async def events(self, first: dict[str, Any]) -> AsyncIterator[bytes]:
        yield json.dumps(first).encode() + b"\n"
        while (event := await self.queue.get()) is not None:
            yield json.dumps(event).encode() + b"\n"


_running: set[asyncio.Task[None]] = set()


async def claim(*, state: ServerState, user: keys.UserPrincipal) -> PushSlot:
    """A slot for one push of `user`, before anything of it is read (429 or 503 when this
    user or the server already runs as many pushes as the settings allow)."""
    settings = state.settings
    return await state.pushes.claim(user_id=user.user_id, total=settings.max_pushes,
                             per_user=settings.max_pushes_per_user)


async def start(*, state: ServerState, user: keys.UserPrincipal, fleet: str, request: Request,
                slot: PushSlot) -> tuple[PushJob, Project, int, BuildTarget]:
    """Receive and unpack a push, record its release and start the build in a task that goes
    on even if the client goes away. Until that task owns them, the push's work directory is
    removed and its `slot` (from `claim`) given back here whatever happens. `fleet` is a
    fleet name or uuid of this user."""
    job = PushJob(state=state, user=user, fleet=fleet, slot=slot)
    started = False
    try:
        found = await run_in_threadpool(job.find_fleet)
        await receive_upload(request, into=job.upload, limit=job.limits.stream_bytes)
        project, release_id, target, subs = await run_in_threadpool(job.prepare, found)
        task = asyncio.create_task(job.run(project, release_id, target, subs))
        started = True
    finally:
        if not started:
            try:
                await run_in_threadpool(shutil.rmtree, job.workdir, True)
            finally:
                slot.release()
    _running.add(task)
    task.add_done_callback(_running.discard)
    return job, project, release_id, target


async def push(*, state: ServerState, user: keys.UserPrincipal, fleet: str,
               request: Request, slot: PushSlot) -> StreamingResponse:
    """Start a push and stream its events (NDJSON)."""
    job, project, _release_id, target = await start(state=state, user=user, fleet=fleet,
                                                    request=request, slot=slot)
    first = {"type": "release", "commit": target.commit, "status": "building",
             "services": [b.service for b in project.builds] + list(project.images)}
    return StreamingResponse(job.events(first), media_type="application/x-ndjson")


def fail_interrupted(state: ServerState) -> None:
    """Releases left `building` by a server that stopped mid-build become `failed`."""
    with state.db.session() as s:
        for rel in s.execute(sa.select(t.Release).where(t.Release.status == "building")
                             ).scalars():
            fail_release(s, release=rel, error="the server stopped during the build")

