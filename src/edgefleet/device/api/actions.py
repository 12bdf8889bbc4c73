"""What the action endpoints do to the engine: restart/stop/start a service (restart never
recreates), restart or purge an app, reboot/shutdown the host. Locks are honoured unless
forced (423 otherwise)."""

from __future__ import annotations

import asyncio
import contextlib

from edgefleet.device.api.auth import Caller
from edgefleet.device.api.context import ApiContext
from edgefleet.device.api.errors import ApiError
from edgefleet.engine.errors import EngineError, NotFound
from edgefleet.model import naming
from edgefleet.model.engine_state import ContainerState, EngineState
from edgefleet.model.service import AppSpec, ServiceSpec

LOCKED = ("Updates are locked: a service of app {app} holds /tmp/balena/updates.lock;"
          " send force: true to override")


def find_app(ctx: ApiContext, who: Caller, app_id: int) -> AppSpec:
    """The target's app with this id; 404 when there is none, 401 for another app's key."""
    for app in ctx.supervisor.desired.apps.values():
        if app.app_id == app_id:
            if not who.may(app.app_uuid):
                raise ApiError(401, f"Unauthorized: this API key is scoped to another app,"
                               f" not app {app_id}")
            return app
    raise ApiError(404, f"App not found: {app_id}")


def find_service(app: AppSpec, *, service_name: str | None, image_id: int | None) -> ServiceSpec:
    if service_name is None and image_id is None:
        raise ApiError(400, "This endpoint requires one of imageId or serviceName")
    for svc in app.services.values():
        if (image_id is not None and svc.image_id == image_id) or (
                image_id is None and svc.service_name == service_name):
            return svc
    raise ApiError(404, f"Service not found: {service_name or image_id} in app {app.app_id}")


def check_lock(ctx: ApiContext, *, app_uuids: list[str], force: bool) -> None:
    """423 while one of these apps holds its update lock, unless forced."""
    sup = ctx.supervisor
    if force or sup.lock_override:
        return
    for app_uuid in app_uuids:
        if not sup.may_disturb(app_uuid):
            app = sup.desired.apps.get(app_uuid)
            raise ApiError(423, LOCKED.format(app=app.app_id if app else app_uuid))


async def observe(ctx: ApiContext) -> EngineState:
    try:
        observed = await ctx.supervisor.engine.observe()
    except EngineError as exc:
        raise ApiError(503, f"The container engine did not answer: {exc}") from None
    ctx.supervisor.state.observed = observed
    return observed


def containers_of(observed: EngineState, app_uuid: str,
                  service: str | None = None) -> list[ContainerState]:
    return [c for c in observed.containers if c.app_uuid == app_uuid
            and (service is None or c.service_name == service)]


async def service_action(ctx: ApiContext, *, app: AppSpec, svc: ServiceSpec, action: str,
                         force: bool) -> None:
    """restart (the same container, not recreated), stop (stays stopped) or start."""
    check_lock(ctx, app_uuids=[app.app_uuid], force=force)
    sup = ctx.supervisor
    key = (app.app_uuid, svc.service_name)
    async with sup.busy:
        found = containers_of(await observe(ctx), app.app_uuid, svc.service_name)
        if action == "start":
            sup.stopped_services.discard(key)
        elif action == "stop":
            sup.stopped_services.add(key)
        if not found:
            if action == "start":
                sup.wake()
                return
            raise ApiError(404, f"Service {svc.service_name} of app {app.app_id} has no"
                           " container")
        try:
            for c in found:
                if action == "restart":
                    await sup.engine.restart_container(c.id, timeout_s=svc.stop_grace_period_s)
                elif action == "stop":
                    await sup.engine.stop_container(c.id, timeout_s=svc.stop_grace_period_s)
                else:
                    await sup.engine.start_container(c.id)
        except NotFound:
            pass  # it went away meanwhile; the loop takes over
        except EngineError as exc:
            raise ApiError(503, f"Could not {action} service {svc.service_name}: {exc}") from None
    sup.logs.system(f"Service {svc.service_name} {action} requested through the API",
                    app_uuid=app.app_uuid, service=svc.service_name)
    sup.wake()


async def restart_app(ctx: ApiContext, *, app: AppSpec, force: bool) -> None:
    """Restart every container of the app in place."""
    check_lock(ctx, app_uuids=[app.app_uuid], force=force)
    sup = ctx.supervisor
    async with sup.busy:
        for c in containers_of(await observe(ctx), app.app_uuid):
            svc = app.services.get(c.service_name)
            try:
                await sup.engine.restart_container(
                    c.id, timeout_s=svc.stop_grace_period_s if svc else 10.0)
            except NotFound:
                continue
            except EngineError as exc:
                raise ApiError(503, f"Could not restart {c.service_name}: {exc}") from None
    sup.logs.system(f"App {app.app_id} restarted through the API", app_uuid=app.app_uuid)
    sup.wake()


async def purge_app(ctx: ApiContext, *, app: AppSpec, force: bool) -> None:
    """Remove the app's containers and volumes; the loop then installs it afresh."""
    check_lock(ctx, app_uuids=[app.app_uuid], force=force)
    sup = ctx.supervisor
    async with sup.busy:
        observed = await observe(ctx)
        try:
            for c in containers_of(observed, app.app_uuid):
                with contextlib.suppress(NotFound):
                    await sup.engine.remove_container(c.id, force=True)
            for v in observed.volumes:
                if v.labels.get(naming.APP_UUID) == app.app_uuid:
                    with contextlib.suppress(NotFound):
                        await sup.engine.remove_volume(v.name)
        except EngineError as exc:
            raise ApiError(503, f"Could not purge app {app.app_id}: {exc}") from None
    sup.logs.system(f"App {app.app_id} purged through the API: containers and volumes removed,"
                    " reinstalling", app_uuid=app.app_uuid)
    sup.wake()


def schedule_host_command(ctx: ApiContext, *, what: str, argv: tuple[str, ...],
                          force: bool) -> None:
    """Reboot or shutdown: 423 while any app is locked (unless forced), else run `argv`
    shortly after the response has gone out."""
    check_lock(ctx, app_uuids=list(ctx.supervisor.desired.apps), force=force)
    sup = ctx.supervisor
    sup.logs.system(f"{what.capitalize()} requested through the API: running {' '.join(argv)}")

    async def later() -> None:
        await asyncio.sleep(ctx.host.delay_s)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
        except OSError as exc:
            sup.logs.system(f"{what.capitalize()} failed: {argv[0]}: {exc}", error=True)
            return
        if proc.returncode:
            sup.logs.system(f"{what.capitalize()} failed: {' '.join(argv)} exited"
                            f" {proc.returncode}: {out.decode(errors='replace')[-500:]}",
                            error=True)

    task = asyncio.get_running_loop().create_task(later())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()
