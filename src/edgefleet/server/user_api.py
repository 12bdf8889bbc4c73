"""The user API (`/api/v1`): who am I, users, fleets, provisioning keys, config.json."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError

from edgefleet.model.timeutil import now_ms
from edgefleet.server import audit, keys, roles
from edgefleet.server import tables as t
from edgefleet.server.access import require_user
from edgefleet.server.authz import Access, allow
from edgefleet.server.devicetypes import DEVICE_TYPES
from edgefleet.server.orgs import personal_handle, personal_org
from edgefleet.server.state import ServerState
from edgefleet.server.user_schemas import (
    ConfigRequest,
    FleetCreate,
    FleetOut,
    FleetUpdate,
    KeyCreated,
    TokenCreate,
    UserCreate,
    UserCreated,
    WhoAmI,
)
from edgefleet.server.views import fleet_out, resolve_release

UserDep = Callable[..., Awaitable[keys.UserPrincipal]]
ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "No or unknown token"},
                                           403: {"description": "Not allowed"}}


def user_dependency(*, state: ServerState) -> UserDep:
    """The user behind the bearer token (401/403 otherwise). Routes declare a permission with
    `authz.allow` instead; this stays for code that only needs the user."""
    scheme = HTTPBearer(auto_error=False)

    async def current_user(request: Request, _cred: HTTPAuthorizationCredentials | None
                           = Depends(scheme)) -> keys.UserPrincipal:
        return require_user(await state.principal(request.headers.get("authorization")))

    return current_user


def router(*, state: ServerState) -> APIRouter:
    """Routes for users, fleets and provisioning."""
    api = APIRouter(prefix="/api/v1", tags=["user"], responses=ERRORS)
    db = state.db

    @api.get("/whoami", response_model=WhoAmI)
    def whoami(a: Access = Depends(allow(state, roles.ACCOUNT))) -> WhoAmI:
        """The user the token belongs to (a sign-in: `edgefleet login` asks this)."""
        user = a.user
        with db.session() as s:
            org = personal_handle(s, user_id=user.user_id)
            audit.record(s, actor=user.username, action="sign-in", organization=org,
                         target=user.username, detail={"scope": user.scope},
                         retention_days=state.settings.audit_retention_days)
        return WhoAmI(id=user.user_id, username=user.username, is_admin=user.is_admin,
                      is_support=user.is_support, organization=org)

    @api.post("/users", status_code=201, response_model=UserCreated, responses={409: {}})
    def create_user(body: UserCreate, a: Access = Depends(allow(state, roles.ADMIN))
                    ) -> UserCreated:
        """Create a user (with a personal organization) and its first token (admins only)."""
        try:
            with db.session() as s:
                new = t.User(username=body.username, is_admin=body.is_admin,
                             is_support=body.is_support, created_ms=now_ms())
                s.add(new)
                s.flush()
                org = personal_org(s, user=new)
                token = keys.add_key(s, kind="user", user_id=new.id, name="first token")
                audit.record(s, actor=a.user.username, action="user.create",
                             organization=org.handle, target=new.username,
                             detail={"is_admin": body.is_admin, "is_support": body.is_support})
                return UserCreated(id=new.id, username=new.username, token=token)
        except IntegrityError:
            raise HTTPException(409, f"user {body.username!r} exists") from None

    @api.get("/device-types", response_model=dict[str, str])
    def device_types(_a: Access = Depends(allow(state, roles.ACCOUNT))) -> dict[str, str]:
        """Known device types and their architectures."""
        return DEVICE_TYPES

    @api.get("/fleets", response_model=list[FleetOut])
    def list_fleets(a: Access = Depends(allow(state, "fleet.read"))) -> list[FleetOut]:
        """The fleets the calling user may see (organizations, fleet roles, support grants)."""
        with db.session() as s:
            return [fleet_out(s, fleet=f) for f in a.fleets(s)]

    @api.post("/fleets", status_code=201, response_model=FleetOut,
              responses={400: {}, 409: {}})
    def create_fleet(body: FleetCreate, a: Access = Depends(allow(state, "fleet.create"))
                     ) -> FleetOut:
        """Create a fleet of a known device type in an organization (default: your personal
        one)."""
        if body.device_type not in DEVICE_TYPES:
            raise HTTPException(400, f"unknown device type {body.device_type!r}; known: "
                                     + ", ".join(sorted(DEVICE_TYPES)))
        try:
            with db.session() as s:
                org = a.organization(s, body.organization)
                if s.execute(sa.select(t.Fleet.id).where(t.Fleet.organization_id == org.id,
                                                         t.Fleet.name == body.name)).first():
                    raise IntegrityError("", None, Exception("exists"))
                fleet = t.Fleet(uuid=uuidlib.uuid4().hex, name=body.name,
                                owner_id=a.user.user_id, device_type=body.device_type,
                                organization_id=org.id, created_ms=now_ms())
                s.add(fleet)
                s.flush()
                audit.record(s, actor=a.user.username, action="fleet.create", fleet=fleet,
                             target=fleet.name)
                return fleet_out(s, fleet=fleet)
        except IntegrityError:
            raise HTTPException(409, f"a fleet named {body.name!r} exists there (or you "
                                     "created one of that name elsewhere)") from None

    @api.get("/fleets/{fleet}", response_model=FleetOut, responses={404: {}})
    def show_fleet(fleet: str, a: Access = Depends(allow(state, "fleet.read"))) -> FleetOut:
        """One fleet (by name or uuid)."""
        with db.session() as s:
            return fleet_out(s, fleet=a.fleet(s, fleet))

    @api.patch("/fleets/{fleet}", response_model=FleetOut, responses={404: {}, 409: {}})
    def update_fleet(fleet: str, body: FleetUpdate,
                     a: Access = Depends(allow(state, "fleet.pin"))) -> FleetOut:
        """Set the fleet's target release: "latest" or a successful release's commit."""
        with db.session() as s:
            f = a.fleet(s, fleet)
            f.target_release_id = (None if body.target_release == "latest" else
                                   resolve_release(s, fleet=f, commit=body.target_release).id)
            audit.record(s, actor=a.user.username, action="fleet.pin", fleet=f,
                         target=body.target_release)
            db.bump_generation(s)
            out = fleet_out(s, fleet=f)
        state.refresh_generation()
        return out

    @api.delete("/fleets/{fleet}", status_code=204, responses={404: {}})
    def delete_fleet(fleet: str, a: Access = Depends(allow(state, "fleet.delete"))) -> None:
        """Delete a fleet with its devices, releases and variables."""
        with db.session() as s:
            f = a.fleet(s, fleet)
            audit.record(s, actor=a.user.username, action="fleet.delete", fleet=f,
                         target=f.name)
            s.delete(f)
            db.bump_generation(s, keys=True)
        state.refresh_generation()

    @api.post("/fleets/{fleet}/provisioning-keys", status_code=201, response_model=KeyCreated,
              responses={404: {}})
    def provisioning_key(fleet: str, body: TokenCreate,
                         a: Access = Depends(allow(state, "fleet.provision"))) -> KeyCreated:
        """A new provisioning key: it can only register devices into this fleet."""
        with db.session() as s:
            f = a.fleet(s, fleet)
            audit.record(s, actor=a.user.username, action="provisioning-key.create", fleet=f,
                         target=body.name)
            return KeyCreated(key=keys.add_key(s, kind="provisioning", fleet_id=f.id,
                                               name=body.name))

    @api.post("/fleets/{fleet}/config", response_model=dict[str, Any], responses={404: {}})
    def provisioning_config(fleet: str, body: ConfigRequest,
                            a: Access = Depends(allow(state, "fleet.provision"))
                            ) -> dict[str, Any]:
        """A provisioning config.json for a new device of this fleet (with a new
        provisioning key), as `balena os configure` writes it."""
        user = a.user
        with db.session() as s:
            f = a.fleet(s, fleet)
            key = keys.add_key(s, kind="provisioning", fleet_id=f.id, name="config.json")
            audit.record(s, actor=user.username, action="provisioning-key.create", fleet=f,
                         target="config.json")
            return {
                "applicationId": f.id, "applicationName": f.name, "deviceType": f.device_type,
                "apiEndpoint": state.settings.public_url, "provisioningApiKey": key,
                "registryEndpoint": state.settings.registry or "",
                "appUpdatePollInterval": body.poll_interval_ms, "listenPort": 48484,
                "userId": user.user_id, "username": user.username,
                "persistentLogging": False,
            }

    return api
