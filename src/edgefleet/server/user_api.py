"""The user API (`/api/v1`): who am I, users, tokens, fleets, provisioning keys, config.json."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import IntegrityError

from edgefleet.model.timeutil import now_ms
from edgefleet.server import keys
from edgefleet.server import tables as t
from edgefleet.server.access import require_user, user_fleet
from edgefleet.server.devicetypes import DEVICE_TYPES
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
    """A FastAPI dependency giving the user behind the bearer token (401/403 otherwise)."""
    scheme = HTTPBearer(auto_error=False)

    async def current_user(request: Request, _cred: HTTPAuthorizationCredentials | None
                           = Depends(scheme)) -> keys.UserPrincipal:
        return require_user(await state.principal(request.headers.get("authorization")))

    return current_user


def router(*, state: ServerState, current_user: UserDep) -> APIRouter:
    """Routes for users, fleets and provisioning."""
    api = APIRouter(prefix="/api/v1", tags=["user"], responses=ERRORS)
    db = state.db

    @api.get("/whoami", response_model=WhoAmI)
    def whoami(user: keys.UserPrincipal = Depends(current_user)) -> WhoAmI:
        """The user the token belongs to."""
        return WhoAmI(id=user.user_id, username=user.username, is_admin=user.is_admin)

    @api.post("/users", status_code=201, response_model=UserCreated, responses={409: {}})
    def create_user(body: UserCreate, user: keys.UserPrincipal = Depends(current_user)
                    ) -> UserCreated:
        """Create a user and its first token (admins only)."""
        if not user.is_admin:
            raise HTTPException(403, "only an admin creates users")
        try:
            with db.session() as s:
                new = t.User(username=body.username, is_admin=body.is_admin,
                             created_ms=now_ms())
                s.add(new)
                s.flush()
                token = keys.add_key(s, kind="user", user_id=new.id, name="first token")
                return UserCreated(id=new.id, username=new.username, token=token)
        except IntegrityError:
            raise HTTPException(409, f"user {body.username!r} exists") from None

    @api.post("/tokens", status_code=201, response_model=KeyCreated)
    def create_token(body: TokenCreate, user: keys.UserPrincipal = Depends(current_user)
                     ) -> KeyCreated:
        """A new API token for the calling user."""
        with db.session() as s:
            return KeyCreated(key=keys.add_key(s, kind="user", user_id=user.user_id,
                                               name=body.name))

    @api.get("/device-types", response_model=dict[str, str])
    def device_types(_user: keys.UserPrincipal = Depends(current_user)) -> dict[str, str]:
        """Known device types and their architectures."""
        return DEVICE_TYPES

    @api.get("/fleets", response_model=list[FleetOut])
    def list_fleets(user: keys.UserPrincipal = Depends(current_user)) -> list[FleetOut]:
        """The calling user's fleets."""
        with db.session() as s:
            rows = s.execute(sa.select(t.Fleet).where(t.Fleet.owner_id == user.user_id)
                             .order_by(t.Fleet.name)).scalars()
            return [fleet_out(s, fleet=f) for f in rows]

    @api.post("/fleets", status_code=201, response_model=FleetOut,
              responses={400: {}, 409: {}})
    def create_fleet(body: FleetCreate, user: keys.UserPrincipal = Depends(current_user)
                     ) -> FleetOut:
        """Create a fleet of a known device type."""
        if body.device_type not in DEVICE_TYPES:
            raise HTTPException(400, f"unknown device type {body.device_type!r}; known: "
                                     + ", ".join(sorted(DEVICE_TYPES)))
        try:
            with db.session() as s:
                fleet = t.Fleet(uuid=uuidlib.uuid4().hex, name=body.name,
                                owner_id=user.user_id, device_type=body.device_type,
                                created_ms=now_ms())
                s.add(fleet)
                s.flush()
                return fleet_out(s, fleet=fleet)
        except IntegrityError:
            raise HTTPException(409, f"you have a fleet named {body.name!r}") from None

    @api.get("/fleets/{fleet}", response_model=FleetOut, responses={404: {}})
    def show_fleet(fleet: str, user: keys.UserPrincipal = Depends(current_user)) -> FleetOut:
        """One fleet (by name or uuid)."""
        with db.session() as s:
            return fleet_out(s, fleet=user_fleet(s, user=user, name=fleet))

    @api.patch("/fleets/{fleet}", response_model=FleetOut, responses={404: {}, 409: {}})
    def update_fleet(fleet: str, body: FleetUpdate,
                     user: keys.UserPrincipal = Depends(current_user)) -> FleetOut:
        """Set the fleet's target release: "latest" or a successful release's commit."""
        with db.session() as s:
            f = user_fleet(s, user=user, name=fleet)
            f.target_release_id = (None if body.target_release == "latest" else
                                   resolve_release(s, fleet=f, commit=body.target_release).id)
            db.bump_generation(s)
            out = fleet_out(s, fleet=f)
        state.refresh_generation()
        return out

    @api.delete("/fleets/{fleet}", status_code=204, responses={404: {}})
    def delete_fleet(fleet: str, user: keys.UserPrincipal = Depends(current_user)) -> None:
        """Delete a fleet with its devices, releases and variables."""
        with db.session() as s:
            s.delete(user_fleet(s, user=user, name=fleet))
            db.bump_generation(s, keys=True)
        state.refresh_generation()

    @api.post("/fleets/{fleet}/provisioning-keys", status_code=201, response_model=KeyCreated,
              responses={404: {}})
    def provisioning_key(fleet: str, body: TokenCreate,
                         user: keys.UserPrincipal = Depends(current_user)) -> KeyCreated:
        """A new provisioning key: it can only register devices into this fleet."""
        with db.session() as s:
            f = user_fleet(s, user=user, name=fleet)
            return KeyCreated(key=keys.add_key(s, kind="provisioning", fleet_id=f.id,
                                               name=body.name))

    @api.post("/fleets/{fleet}/config", response_model=dict[str, Any], responses={404: {}})
    def provisioning_config(fleet: str, body: ConfigRequest,
                            user: keys.UserPrincipal = Depends(current_user)) -> dict[str, Any]:
        """A provisioning config.json for a new device of this fleet (with a new
        provisioning key), as `balena os configure` writes it."""
        with db.session() as s:
            f = user_fleet(s, user=user, name=fleet)
            key = keys.add_key(s, kind="provisioning", fleet_id=f.id, name="config.json")
            return {
                "applicationId": f.id, "applicationName": f.name, "deviceType": f.device_type,
                "apiEndpoint": state.settings.public_url, "provisioningApiKey": key,
                "registryEndpoint": state.settings.registry or "",
                "appUpdatePollInterval": body.poll_interval_ms, "listenPort": 48484,
                "userId": user.user_id, "username": user.username,
                "persistentLogging": False,
            }

    return api
