"""The v2 app endpoints: states, service restart/stop/start, app restart/purge, containerId
and `/v2/state/status`; app keys see their own app only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from edgefleet.device.api import actions, views
from edgefleet.device.api.auth import AnyKey, Ctx
from edgefleet.device.api.errors import ApiError

router = APIRouter(tags=["v2"])


class ServiceAction(BaseModel):
    serviceName: str | None = Field(default=None, max_length=255)
    imageId: int | None = Field(default=None, ge=0, le=2**63 - 1)
    force: bool = False


class Force(BaseModel):
    force: bool = False


@router.get("/v2/applications/state")
async def applications_state(ctx: Ctx, who: AnyKey) -> dict[str, Any]:
    """Every app (only the caller's app for an app key) with its services' status."""
    return views.applications_state(ctx, who)


@router.get("/v2/applications/{appId}/state")
async def application_state(ctx: Ctx, who: AnyKey, appId: int) -> dict[str, Any]:
    """One app's services, keyed by image id."""
    return views.app_state(ctx, actions.find_app(ctx, who, appId))


async def _service(ctx: Ctx, who: AnyKey, app_id: int, body: ServiceAction, action: str) -> str:
    app = actions.find_app(ctx, who, app_id)
    svc = actions.find_service(app, service_name=body.serviceName, image_id=body.imageId)
    await actions.service_action(ctx, app=app, svc=svc, action=action, force=body.force)
    return "OK"


@router.post("/v2/applications/{appId}/restart-service", response_class=PlainTextResponse)
async def restart_service(ctx: Ctx, who: AnyKey, appId: int,
                          body: ServiceAction) -> str:
    """Restart a service's container (the same container: it is not recreated)."""
    return await _service(ctx, who, appId, body, "restart")


@router.post("/v2/applications/{appId}/stop-service", response_class=PlainTextResponse)
async def stop_service(ctx: Ctx, who: AnyKey, appId: int,
                       body: ServiceAction) -> str:
    """Stop a service; it stays stopped until started (or a new target arrives)."""
    return await _service(ctx, who, appId, body, "stop")


@router.post("/v2/applications/{appId}/start-service", response_class=PlainTextResponse)
async def start_service(ctx: Ctx, who: AnyKey, appId: int,
                        body: ServiceAction) -> str:
    """Start a stopped service."""
    return await _service(ctx, who, appId, body, "start")


@router.post("/v2/applications/{appId}/restart", response_class=PlainTextResponse)
async def restart_app(ctx: Ctx, who: AnyKey, appId: int,
                      body: Force | None = None) -> str:
    """Restart every service of the app."""
    app = actions.find_app(ctx, who, appId)
    await actions.restart_app(ctx, app=app, force=bool(body and body.force))
    return "OK"


@router.post("/v2/applications/{appId}/purge", response_class=PlainTextResponse)
async def purge_app(ctx: Ctx, who: AnyKey, appId: int,
                    body: Force | None = None) -> str:
    """Remove the app's containers and volumes, then install it again."""
    app = actions.find_app(ctx, who, appId)
    await actions.purge_app(ctx, app=app, force=bool(body and body.force))
    return "OK"


@router.get("/v2/state/status")
async def state_status(ctx: Ctx, who: AnyKey) -> dict[str, Any]:
    """appState (`applying`/`applied`), containers, images, download progress, release."""
    return views.state_status(ctx, who)


@router.get("/v2/containerId")
async def container_id(ctx: Ctx, who: AnyKey,
                 serviceName: str | None = None,
                 service: str | None = None) -> dict[str, Any]:
    """The container id of a service, or of every service when none is named."""
    seen = views.observed(ctx)
    found: dict[str, str] = {}
    for app in views.visible_apps(ctx, who):
        for s in app.services.values():
            c = views.container_for(seen, s)
            if c is not None:
                found.setdefault(s.service_name, c.id)
    name = serviceName or service
    if name is None:
        return {"status": "success", "services": found}
    if name not in found:
        raise ApiError(404, f"Could not find a container for service {name!r}")
    return {"status": "success", "containerId": found[name]}
