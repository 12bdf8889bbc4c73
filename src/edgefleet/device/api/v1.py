"""The v1 endpoints (compat §5): ping, healthy, blink, keys, update, reboot/shutdown, purge,
restart, single-container app start/stop/info, device info and host config."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from edgefleet.device.api import actions, hostinfo
from edgefleet.device.api.auth import AnyKey, Caller, Ctx, GlobalKey
from edgefleet.device.api.errors import ApiError
from edgefleet.device.api.views import container_for, observed, service_status
from edgefleet.device.health import HealthInput, health
from edgefleet.model.service import AppSpec
from edgefleet.model.timeutil import now_ms

router = APIRouter()
SINGLE_ONLY = "Some v1 endpoints are only allowed on single-container apps"
HOSTNAME_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class Force(BaseModel):
    force: bool = False


class AppAction(BaseModel):
    appId: int = Field(ge=0, le=2**31 - 1)
    force: bool = False


class Proxy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["socks4", "socks5", "http-connect", "http-relay"] | None = None
    ip: str | None = Field(default=None, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    login: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=255)
    noProxy: list[str] | None = None


class HostNetwork(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hostname: str | None = Field(default=None, max_length=63)
    proxy: Proxy | None = None


class HostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: HostNetwork = Field(default_factory=HostNetwork)


@router.get("/ping", response_class=PlainTextResponse, tags=["v1"])
async def ping() -> str:
    """Answers `OK` (no key needed)."""
    return "OK"


@router.get("/v1/healthy", response_class=PlainTextResponse, tags=["v1"],
            responses={500: {"description": "Unhealthy"}})
async def healthy(ctx: Ctx) -> Response:
    """200 `OK`, or 500 `Unhealthy` (no key needed)."""
    state = ctx.loop.state
    ok, reason = health(data=HealthInput(
        now_ms=now_ms(), poll_interval_ms=int(ctx.loop.poll_interval_s * 1000),
        started_ms=ctx.started_ms, managed=ctx.config.is_managed and not ctx.local.enabled,
        last_fetch_ms=state.last_fetch_ms, apply_started_ms=state.apply_started_ms,
        apply_download_ms=state.apply_download_ms, last_loop_ms=state.last_loop_ms,
        loop_running=state.loop_running))
    if ok:
        return PlainTextResponse("OK")
    return PlainTextResponse(f"Unhealthy: {reason}", status_code=500)


@router.post("/v1/blink", response_class=PlainTextResponse, tags=["v1"])
async def blink(ctx: Ctx, _who: AnyKey) -> str:
    """Identify the device (this host has no LED: the request is logged)."""
    ctx.logs.system("Blink requested through the API (no LED on this host)")
    return "OK"


@router.post("/v1/regenerate-api-key", response_class=PlainTextResponse, tags=["v1"],
             responses={423: {"description": "the app's update lock is held"}})
async def regenerate_api_key(ctx: Ctx, who: AnyKey, body: Force | None = None) -> str:
    """A new key for the caller's scope (global, or its app); the old one stops working.
    An app's services that receive the key are recreated (423 while the app's update lock is
    held, unless forced; the key is then kept)."""
    if who.app_uuid is None:
        key = ctx.keys.regenerate()
        ctx.logs.system("Global supervisor API key regenerated")
        return key
    # The key reaches containers through their environment: their containers are removed
    # first (a planned step, refused while locked), then recreated with the new key.
    recreated = await actions.recreate_keyed_services(ctx, app_uuid=who.app_uuid,
                                                      force=bool(body and body.force))
    key = ctx.keys.regenerate(app_uuid=who.app_uuid)
    ctx.targets.reresolve()
    ctx.logs.system("App supervisor API key regenerated" + (
        "; its services are recreated" if recreated else ""), app_uuid=who.app_uuid)
    return key


def _force(ctx: Ctx, who: Caller, body: Force | None) -> bool:
    """Whether the request forces; an app key's force overrides its own app's update lock
    only, so another app's lock still answers 423 (the global key's overrides them all)."""
    force = bool(body and body.force)
    if force and who.app_uuid is not None:
        actions.check_lock(ctx, app_uuids=[u for u in ctx.targets.desired.apps
                                           if u != who.app_uuid], force=False)
    return force


@router.post("/v1/update", status_code=204, tags=["v1"],
             responses={202: {"description": "ignored (local mode)"}})
async def update(ctx: Ctx, who: AnyKey, body: Force | None = None) -> Response:
    """Fetch the target now and apply it (force overrides update locks)."""
    if ctx.local.enabled:
        return Response(status_code=202)
    if _force(ctx, who, body):
        ctx.loop.force_once = True
    ctx.loop.wake()
    if ctx.on_update_requested is not None:
        ctx.on_update_requested()
    return Response(status_code=204)


def _host(ctx: Ctx, what: str, argv: tuple[str, ...], force: bool) -> JSONResponse:
    actions.schedule_host_command(ctx, what=what, argv=argv, force=force)
    return JSONResponse({"Data": "OK", "Error": None}, status_code=202)


@router.post("/v1/reboot", status_code=202, tags=["v1"])
async def reboot(ctx: Ctx, who: AnyKey, body: Force | None = None) -> JSONResponse:
    """Reboot the host (423 while an update lock is held, unless forced)."""
    return _host(ctx, "reboot", ctx.host.reboot, _force(ctx, who, body))


@router.post("/v1/shutdown", status_code=202, tags=["v1"])
async def shutdown(ctx: Ctx, who: AnyKey, body: Force | None = None) -> JSONResponse:
    """Shut the host down (423 while an update lock is held, unless forced)."""
    return _host(ctx, "shutdown", ctx.host.shutdown, _force(ctx, who, body))


@router.post("/v1/purge", tags=["v1"])
async def purge(ctx: Ctx, who: AnyKey, body: AppAction) -> dict[str, Any]:
    """Remove an app's containers and volumes, then install it again."""
    app = actions.find_app(ctx, who, body.appId)
    await actions.purge_app(ctx, app=app, force=body.force)
    return {"Data": "OK", "Error": ""}


@router.post("/v1/restart", response_class=PlainTextResponse, tags=["v1"])
async def restart(ctx: Ctx, who: AnyKey, body: AppAction) -> str:
    """Restart every service of an app (the same containers, not recreated)."""
    app = actions.find_app(ctx, who, body.appId)
    await actions.restart_app(ctx, app=app, force=body.force)
    return "OK"


def _single(app: AppSpec) -> Any:
    if len(app.services) != 1:
        raise ApiError(400, SINGLE_ONLY)
    return next(iter(app.services.values()))


async def _start_stop(ctx: Ctx, who: AnyKey, app_id: int, action: str,
                      body: Force | None) -> dict[str, Any]:
    app = actions.find_app(ctx, who, app_id)
    svc = _single(app)
    await actions.service_action(ctx, app=app, svc=svc, action=action,
                                 force=bool(body and body.force))
    c = container_for(await actions.observe(ctx), svc)
    return {"containerId": c.id if c else None}


@router.post("/v1/apps/{appId}/stop", tags=["v1"])
async def app_stop(ctx: Ctx, who: AnyKey, appId: int, body: Force | None = None
                   ) -> dict[str, Any]:
    """Stop a single-container app's service (it stays stopped)."""
    return await _start_stop(ctx, who, appId, "stop", body)


@router.post("/v1/apps/{appId}/start", tags=["v1"])
async def app_start(ctx: Ctx, who: AnyKey, appId: int, body: Force | None = None
                    ) -> dict[str, Any]:
    """Start a single-container app's service."""
    return await _start_stop(ctx, who, appId, "start", body)


@router.get("/v1/apps/{appId}", tags=["v1"])
async def app_info(ctx: Ctx, who: AnyKey, appId: int) -> dict[str, Any]:
    """A single-container app: id, commit, container, environment, image and release."""
    app = actions.find_app(ctx, who, appId)
    svc = _single(app)
    c = container_for(observed(ctx), svc)
    return {"appId": app.app_id, "commit": app.commit, "containerId": c.id if c else None,
            "env": svc.environment, "imageId": svc.image, "releaseId": app.release_id}


@router.get("/v1/device", tags=["v1"])
async def device(ctx: Ctx, who: AnyKey) -> dict[str, Any]:
    """Device status: addresses, versions, update state and download progress."""
    seen = observed(ctx)
    apps = [a for a in ctx.targets.desired.apps.values() if who.may(a.app_uuid)]
    statuses = [service_status(ctx, seen, s) for a in apps for s in a.services.values()]
    progress = [done * 100 // total for done, total in ctx.loop.state.progress.values() if total]
    downloading = "Downloading" in statuses
    status = ("Downloading" if downloading else
              "Installing" if ctx.loop.state.app_state == "applying" else "Idle")
    commit = next((a.commit for a in apps if a.commit), None)
    return {
        "api_port": ctx.api_port, "ip_address": " ".join(hostinfo.ip_addresses()),
        "mac_address": " ".join(hostinfo.mac_addresses()), "commit": commit,
        "os_version": ctx.os_version or hostinfo.os_version(),
        "supervisor_version": ctx.version, "status": status,
        "download_progress": sum(progress) // len(progress) if progress else None,
        "update_pending": ctx.loop.state.app_state == "applying",
        "update_downloaded": not downloading and ctx.loop.state.app_state == "applying",
        "update_failed": bool(ctx.loop.state.last_error),
    }


def _host_config(ctx: Ctx) -> dict[str, Any]:
    raw = ctx.store.get_config(key="hostConfig")
    stored = json.loads(raw) if raw else {}
    hostname = stored.get("hostname") or ctx.config.hostname or ctx.targets.device.uuid[:7]
    return {"network": {"hostname": hostname, "proxy": stored.get("proxy") or {}}}


@router.get("/v1/device/host-config", tags=["v1"])
async def get_host_config(ctx: Ctx, _who: GlobalKey) -> dict[str, Any]:
    """Hostname and proxy settings (proxy credentials included: the global key only)."""
    return _host_config(ctx)


@router.patch("/v1/device/host-config", response_class=PlainTextResponse, tags=["v1"])
async def patch_host_config(ctx: Ctx, _who: GlobalKey, body: HostConfig) -> str:
    """Change the hostname and/or proxy settings (stored, and reported by GET); device-wide,
    so the global key only."""
    net = body.network
    if net.hostname is not None and not HOSTNAME_RE.match(net.hostname):
        raise ApiError(400, f"Invalid hostname {net.hostname!r}: letters, digits and '-',"
                       " 1-63 characters, not starting or ending with '-'")
    if net.proxy is not None and (net.proxy.ip or net.proxy.port) and not net.proxy.type:
        raise ApiError(400, "proxy.type is required with a proxy ip or port")
    current = _host_config(ctx)["network"]
    stored = {"hostname": net.hostname if net.hostname is not None else current["hostname"],
              "proxy": net.proxy.model_dump(exclude_none=True) if net.proxy is not None
              else current["proxy"]}
    ctx.store.set_config(key="hostConfig", value=json.dumps(stored))
    ctx.logs.system("Host config changed through the API")
    return "OK"
