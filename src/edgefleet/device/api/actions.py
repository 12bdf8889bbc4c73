"""What the action endpoints do: restart/stop/start a service (restart never recreates),
restart or purge an app, recreate for new keys, clean up volumes are *intents* the planner turns
into steps (gated by update locks and `force` like every kill) and the executor runs;
reboot/shutdown the host. Locks are honoured unless forced (423 otherwise)."""

from __future__ import annotations

import asyncio

from edgefleet.device.api.auth import Caller
from edgefleet.device.api.context import ApiContext
from edgefleet.device.api.errors import ApiError
from edgefleet.device.api_keys import SUPERVISOR_API_FEATURE
from edgefleet.device.intent_queue import IntentResult, Outcome
from edgefleet.engine.errors import EngineError
from edgefleet.model.engine_state import ContainerState, EngineState
from edgefleet.model.service import AppSpec, ServiceSpec
from edgefleet.plan.intents import Intent, IntentKind

LOCKED = ("Updates are locked: a service of app {app} holds /tmp/balena/updates.lock;"
          " send force: true to override")


def find_app(ctx: ApiContext, who: Caller, app_id: int) -> AppSpec:
    """The target's app with this id; 404 when there is none, 401 for another app's key."""
    for app in ctx.targets.desired.apps.values():
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
    if force or ctx.loop.lock_override:
        return
    for app_uuid in app_uuids:
        if not ctx.loop.may_disturb(app_uuid):
            app = ctx.targets.desired.apps.get(app_uuid)
            raise ApiError(423, LOCKED.format(app=app.app_id if app else app_uuid))


async def observe(ctx: ApiContext) -> EngineState:
    try:
        observed = await ctx.observer.engine.observe()
    except EngineError as exc:
        raise ApiError(503, f"The container engine did not answer: {exc}") from None
    ctx.loop.state.observed = observed
    return observed


def containers_of(observed: EngineState, app_uuid: str,
                  service: str | None = None) -> list[ContainerState]:
    return [c for c in observed.containers if c.app_uuid == app_uuid
            and (service is None or c.service_name == service)]


async def run_intent(ctx: ApiContext, *, kind: IntentKind, app: AppSpec | None = None,
                     services: tuple[str, ...] = (), force: bool = False) -> IntentResult:
    """Record the intent and wait for the round of the plan that carries it out: 423 when
    the app's update lock held it back, 503 when a step failed."""
    result = await ctx.loop.submit(Intent(id=ctx.loop.intents.new_id(kind), kind=kind,
                                     app_uuid=app.app_uuid if app else "",
                                     services=services, force=force))
    if result.outcome is Outcome.LOCKED:
        raise ApiError(423, LOCKED.format(app=app.app_id if app else "?"))
    if result.outcome is Outcome.FAILED:
        what = f"{kind} app {app.app_id}" if app else str(kind)
        raise ApiError(503, f"Could not {what}: {result.error}")
    return result


async def service_action(ctx: ApiContext, *, app: AppSpec, svc: ServiceSpec, action: str,
                         force: bool) -> None:
    """restart (the same container, not recreated), stop (stays stopped) or start."""
    found = containers_of(await observe(ctx), app.app_uuid, svc.service_name)
    if not found and action != "start":
        raise ApiError(404, f"Service {svc.service_name} of app {app.app_id} has no container")
    await run_intent(ctx, kind=IntentKind(action), app=app, services=(svc.service_name,),
                     force=force)


async def restart_app(ctx: ApiContext, *, app: AppSpec, force: bool) -> None:
    """Restart every container of the app in place."""
    await run_intent(ctx, kind=IntentKind.RESTART, app=app, force=force)


async def purge_app(ctx: ApiContext, *, app: AppSpec, force: bool) -> None:
    """Remove the app's containers and volumes; the loop then installs it afresh."""
    await run_intent(ctx, kind=IntentKind.PURGE, app=app, force=force)
    ctx.logs.system(f"App {app.app_id} purged through the API: containers and"
                               " volumes removed, reinstalling", app_uuid=app.app_uuid)


async def recreate_keyed_services(ctx: ApiContext, *, app_uuid: str, force: bool) -> bool:
    """Remove the containers of the app's services that get an API key in their environment
    (the next round creates them with the new key); False when the app has none."""
    app = ctx.targets.desired.apps.get(app_uuid)
    if app is None:
        return False
    keyed = tuple(sorted(n for n, s in app.services.items()
                         if s.labels.get(SUPERVISOR_API_FEATURE, "") not in ("", "0", "false")))
    if not keyed:
        return False
    await run_intent(ctx, kind=IntentKind.RECREATE, app=app, services=keyed, force=force)
    return True


def schedule_host_command(ctx: ApiContext, *, what: str, argv: tuple[str, ...],
                          force: bool) -> None:
    """Reboot or shutdown: 423 while any app is locked (unless forced), else run `argv`
    shortly after the response has gone out."""
    check_lock(ctx, app_uuids=list(ctx.targets.desired.apps), force=force)
    ctx.logs.system(f"{what.capitalize()} requested through the API: running {' '.join(argv)}")

    async def later() -> None:
        await asyncio.sleep(ctx.host.delay_s)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
        except OSError as exc:
            ctx.logs.system(f"{what.capitalize()} failed: {argv[0]}: {exc}", error=True)
            return
        if proc.returncode:
            ctx.logs.system(f"{what.capitalize()} failed: {' '.join(argv)} exited"
                            f" {proc.returncode}: {out.decode(errors='replace')[-500:]}",
                            error=True)

    task = asyncio.get_running_loop().create_task(later())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()
