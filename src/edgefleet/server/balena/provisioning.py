"""Provisioning for the balena CLI: `/api-key/v2/` (a fleet's provisioning key),
`/device-types/v1` (device type manifests) and `/download-config` (a config.json), which
`balena device register` and `balena config generate` use."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from edgefleet.server import keys, roles
from edgefleet.server import tables as t
from edgefleet.server.access import require_user
from edgefleet.server.authz import allow
from edgefleet.server.devicetypes import DEVICE_TYPES
from edgefleet.server.rights import Rights
from edgefleet.server.state import ServerState


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


def manifests() -> list[dict[str, Any]]:
    """Device type manifests as balena's `/device-types/v1` lists them (no OS options)."""
    return [{"slug": slug, "name": slug, "arch": arch, "aliases": [slug], "state": "RELEASED",
             "options": [], "initialization": {"options": []}}
            for slug, arch in sorted(DEVICE_TYPES.items())]


def router(*, state: ServerState) -> APIRouter:
    api = APIRouter(tags=["balena"])
    db = state.db

    async def user_of(request: Request) -> keys.UserPrincipal:
        return require_user(await state.principal(request.headers.get("authorization")))

    def fleet_key(user: keys.UserPrincipal, fleet_id: Any, name: str) -> tuple[t.Fleet, str]:
        with db.session() as s:
            fleet = s.get(t.Fleet, fleet_id) if isinstance(fleet_id, int) else None
            found = None if fleet is None else Rights.load(s, user).check(
                fleet, None, "fleet.provision")
            if fleet is None or found is None:
                raise HTTPException(404, f"no application {fleet_id!r}")
            if not found:
                raise HTTPException(403, f"your role may not fleet.provision on {fleet.name!r}")
            return fleet, keys.add_key(s, kind="provisioning", fleet_id=fleet.id,
                                       name=name[:255])

    @api.post("/api-key/v2/", dependencies=[Depends(allow(state, "fleet.provision"))])
    async def api_key(request: Request) -> Response:
        """A provisioning key for a fleet (`actorType: application`), as a JSON string."""
        user = await user_of(request)
        body = await json_body(request)
        if body.get("actorType") != "application" \
                or body.get("roles") != ["provisioning-api-key"]:
            raise HTTPException(400, "edgefleet makes provisioning keys only: "
                                     "{actorType: 'application', actorTypeId: <fleet id>, "
                                     "roles: ['provisioning-api-key']}")
        _fleet, key = await run_in_threadpool(fleet_key, user, body.get("actorTypeId"),
                                              str(body.get("name") or "balena CLI"))
        return JSONResponse(key)

    @api.get("/config/vars")
    async def config_vars() -> dict[str, Any]:
        """Which variable names are configuration variables (the reserved namespaces)."""
        return {"reservedNames": ["BALENA", "RESIN", "USER"],
                "reservedNamespaces": ["BALENA_", "RESIN_"],
                "invalidRegex": "/^\\d|\\W/", "whiteListedNames": [],
                "whiteListedNamespaces": [], "blackListedNames": [],
                "configVarSchema": {"type": "object", "properties": {}}}

    @api.get("/auth/v1/token", dependencies=[Depends(allow(state, roles.ACCOUNT))])
    async def registry_token(request: Request) -> dict[str, str]:
        """A registry token for `balena deploy`'s image push. edgefleet's registry takes
        anonymous pushes on the server's own host, so the token carries nothing."""
        await user_of(request)
        return {"token": ""}

    @api.get("/device-types/v1", dependencies=[Depends(allow(state, roles.ACCOUNT))])
    async def device_types(request: Request) -> list[dict[str, Any]]:
        await user_of(request)
        return manifests()

    @api.post("/download-config", dependencies=[Depends(allow(state, "fleet.provision"))])
    async def download_config(request: Request) -> dict[str, Any]:
        """A provisioning config.json for a new device of fleet `appId` (with a new
        provisioning key); `appUpdatePollInterval` is in minutes, as balena takes it."""
        user = await user_of(request)
        body = await json_body(request)
        fleet, key = await run_in_threadpool(
            fleet_key, user, body.get("appId"),
            str(body.get("provisioningKeyName") or "config.json"))
        minutes = body.get("appUpdatePollInterval") or 10
        if not isinstance(minutes, int | float) or minutes <= 0:
            raise HTTPException(400, "appUpdatePollInterval: a positive number of minutes")
        device_type = str(body.get("deviceType") or fleet.device_type)
        if device_type not in DEVICE_TYPES:
            raise HTTPException(400, f"unknown device type {device_type!r}")
        return {
            "applicationId": fleet.id, "applicationName": fleet.name,
            "deviceType": device_type, "apiEndpoint": state.settings.public_url,
            "provisioningApiKey": key, "registryEndpoint": state.settings.registry or "",
            "appUpdatePollInterval": int(minutes * 60_000), "listenPort": 48484,
            "userId": user.user_id, "username": user.username, "persistentLogging": False,
            "developmentMode": bool(body.get("developmentMode")),
        }

    return api
