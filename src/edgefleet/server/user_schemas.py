"""Bodies and replies of the user API (`/api/v1`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
VarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_:]{0,254}$")]
ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WhoAmI(BaseModel):
    id: int
    username: str
    is_admin: bool
    is_support: bool = False
    organization: str = Field("", description="The user's personal organization.")


class UserCreate(_In):
    username: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    is_admin: bool = False
    is_support: bool = False


class UserCreated(BaseModel):
    id: int
    username: str
    token: str = Field(description="The new user's API token (shown once).")


class TokenCreate(_In):
    name: Annotated[str, StringConstraints(max_length=255)] = ""
    expires_in_s: int | None = Field(None, ge=60, le=10 * 365 * 86400,
                                     description="Seconds until the token stops working.")
    scope: Literal["full", "read"] = "full"


class KeyCreated(BaseModel):
    key: str = Field(description="The secret (shown once).")


class FleetCreate(_In):
    name: Name
    device_type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    organization: Name | None = Field(None, description="Default: your personal one.")


class FleetUpdate(_In):
    target_release: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description='"latest", or the commit (or a unique prefix) of a successful release.')


class FleetOut(BaseModel):
    id: int
    uuid: str
    name: str
    device_type: str
    target_release: str = Field(description='"latest" or the pinned commit.')
    release: str | None = Field(description="The commit devices of the fleet get now.")
    device_count: int
    organization: str = ""


class ConfigRequest(_In):
    poll_interval_ms: int = Field(default=900_000, ge=10_000, le=86_400_000)


class DeviceUpdate(_In):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    pinned_release: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = \
        Field(default=None, description='A commit to pin the device to, or "none" (or '
                                        '"latest") to follow its fleet again.')


class DeviceReleaseOut(BaseModel):
    commit: str
    update_status: str
    services: dict[str, Any]


class DeviceOut(BaseModel):
    id: int
    uuid: str
    name: str
    fleet: str
    device_type: str
    status: str = Field(description="Online, Heartbeat Only, VPN Only or Offline (compat §4).")
    heartbeat: str = Field(description="online, timeout, offline or unknown.")
    last_seen_ms: int | None
    reported_status: str
    running_release: str | None
    pinned_release: str | None
    target_release: str | None
    update_status: str | None = Field(description="The device's status for its target release.")
    os_version: str
    os_variant: str
    supervisor_version: str
    ip_address: str
    mac_address: str
    reported: dict[str, Any]
    releases: list[DeviceReleaseOut]
    created_ms: int


class ImageOut(BaseModel):
    service: str
    service_id: int
    image_id: int
    ref: str
    digest: str
    size: int


class ReleaseOut(BaseModel):
    id: int
    commit: str
    fleet: str
    status: str
    created_ms: int
    finished_ms: int | None
    error: str
    images: list[ImageOut]
    composition: dict[str, Any]


class VariableSet(_In):
    kind: Literal["env", "config"] = "env"
    fleet: Name | None = None
    device: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    service: ServiceName | None = None
    name: VarName
    value: Annotated[str, StringConstraints(max_length=10_000)]


class VariableOut(BaseModel):
    id: int
    kind: str
    level: str = Field(description="fleet, fleet+service, device or device+service")
    fleet: str
    device: str | None
    service: str | None
    name: str
    value: str
