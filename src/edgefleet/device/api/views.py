"""The state documents the API returns, in balena's shapes, built from what the supervisor
holds in memory (no engine or database call per request)."""

from __future__ import annotations

from typing import Any

from edgefleet.device.api.auth import Caller
from edgefleet.device.api.context import ApiContext
from edgefleet.model.engine_state import ContainerState, EngineState
from edgefleet.model.service import AppSpec, ServiceSpec

CONTAINER_STATUS = {"running": "Running", "created": "Installed", "exited": "exited",
                    "restarting": "restarting", "paused": "paused", "dead": "Dead",
                    "removing": "removing"}


def container_for(observed: EngineState, svc: ServiceSpec) -> ContainerState | None:
    """The service's container: the one named for the target release, else any running one."""
    mine = [c for c in observed.containers
            if c.app_uuid == svc.app_uuid and c.service_name == svc.service_name]
    for c in mine:
        if c.name == svc.container_name:
            return c
    running = [c for c in mine if c.is_running]
    chosen = running or mine
    return chosen[0] if chosen else None


def _progress(ctx: ApiContext, svc: ServiceSpec) -> int | None:
    done, total = ctx.loop.state.progress.get(svc.image, (0, 0))
    if svc.image not in ctx.loop.state.progress:
        return None
    return int(100 * done / total) if total else 0


def image_status(ctx: ApiContext, observed: EngineState, svc: ServiceSpec) -> str:
    if svc.image in ctx.loop.state.progress:
        return "Downloading"
    return "Downloaded" if observed.image_for(svc.image) is not None else "Waiting"


def service_status(ctx: ApiContext, observed: EngineState, svc: ServiceSpec) -> str:
    c = container_for(observed, svc)
    if c is not None:
        return CONTAINER_STATUS.get(c.status, c.status)
    return image_status(ctx, observed, svc)


def visible_apps(ctx: ApiContext, who: Caller) -> list[AppSpec]:
    return [a for a in ctx.targets.desired.apps.values() if who.may(a.app_uuid)]


def observed(ctx: ApiContext) -> EngineState:
    return ctx.loop.state.observed or EngineState()


def applications_state(ctx: ApiContext, who: Caller) -> dict[str, Any]:
    """`GET /v2/applications/state`: `{appName: {appId, commit, services: {...}}}`."""
    seen = observed(ctx)
    out: dict[str, Any] = {}
    for app in visible_apps(ctx, who):
        out[app.name or app.app_uuid] = {
            "appId": app.app_id, "appUuid": app.app_uuid, "commit": app.commit,
            "services": {s.service_name: {"status": service_status(ctx, seen, s),
                                          "releaseId": s.release_id,
                                          "downloadProgress": _progress(ctx, s)}
                         for s in app.services.values()},
        }
    return out


def app_state(ctx: ApiContext, app: AppSpec) -> dict[str, Any]:
    """`GET /v2/applications/:appId/state`: services keyed by image id."""
    seen = observed(ctx)
    services = {str(s.image_id): {"status": service_status(ctx, seen, s),
                                  "releaseId": s.release_id,
                                  "download_progress": _progress(ctx, s)}
                for s in app.services.values()}
    return {"local": {str(app.app_id): {"services": services}}, "dependent": {},
            "commit": app.commit}


def state_status(ctx: ApiContext, who: Caller) -> dict[str, Any]:
    """`GET /v2/state/status` (what balena CLI polls until appState is `applied`)."""
    seen = observed(ctx)
    containers, images, progress = [], [], []
    apps = visible_apps(ctx, who)
    for app in apps:
        for s in app.services.values():
            c = container_for(seen, s)
            if c is not None:
                containers.append({
                    "status": CONTAINER_STATUS.get(c.status, c.status),
                    "serviceName": s.service_name, "appId": app.app_id,
                    "appUuid": app.app_uuid, "imageId": s.image_id,
                    "serviceId": s.service_id, "containerId": c.id,
                    "createdAt": c.started_at, "commit": app.commit,
                })
            image = seen.image_for(s.image)
            pct = _progress(ctx, s)
            if pct is not None:
                progress.append(pct)
            images.append({
                "name": s.image, "appId": app.app_id, "appUuid": app.app_uuid,
                "serviceName": s.service_name, "imageId": s.image_id,
                "dockerImageId": image.id if image else None,
                "status": image_status(ctx, seen, s), "downloadProgress": pct,
            })
    release = next((a.commit for a in apps if a.commit), None)
    return {"status": "success", "appState": ctx.loop.state.app_state,
            "overallDownloadProgress": sum(progress) // len(progress) if progress else None,
            "containers": containers, "images": images, "release": release,
            # delta updates applied / fallen back to a pull (edgefleet extension, issue 19)
            "deltas": getattr(ctx.observer.engine, "stats", None)}
