"""Request bodies of the device-facing API (compat §3-4), validated at the door."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

UUID_PATTERN = r"^[0-9a-f]{16,64}$"
UPDATE_STATUSES = ("aborted", "downloading", "downloaded", "applying changes", "done", "rejected")
Short = Annotated[str, StringConstraints(max_length=255)]
Scalar = str | int | float | bool | None


class RegisterBody(BaseModel):
    """`POST /device/register` body (openBalena's)."""

    model_config = ConfigDict(extra="ignore")

    application: int = Field(ge=1, le=2**31 - 1, description="The fleet's numeric id.")
    device_type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    uuid: Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
    api_key: Annotated[str, StringConstraints(min_length=16, max_length=255,
                                              pattern=r"^[\x21-\x7e]+$")] | None = None
    supervisor_version: Short = ""
    os_version: Short = ""
    os_variant: Short = ""
    mac_address: Short = ""


class RegisterReply(BaseModel):
    """201 reply: the device's id, uuid and API key."""

    id: int
    uuid: str
    api_key: str


class ServiceReport(BaseModel):
    """A service (or image) of a release as the device reports it."""

    model_config = ConfigDict(extra="allow")

    image: Short | None = None
    status: Short | None = None
    download_progress: int | float | None = None


class ReleaseReport(BaseModel):
    """One release of an app in a report."""

    model_config = ConfigDict(extra="allow")

    update_status: Annotated[str, StringConstraints(max_length=64)] | None = None
    services: dict[Short, ServiceReport] = Field(default_factory=dict)


class AppReport(BaseModel):
    """One app in a report."""

    model_config = ConfigDict(extra="allow")

    release_uuid: Short | None = None
    releases: dict[Short, ReleaseReport] = Field(default_factory=dict)


class DeviceReport(BaseModel):
    """What a device says about itself; every field optional (reports are diffs)."""

    model_config = ConfigDict(extra="allow")

    status: Short | None = None
    os_version: Short | None = None
    os_variant: Short | None = None
    supervisor_version: Short | None = None
    mac_address: Annotated[str, StringConstraints(max_length=1024)] | None = None
    ip_address: Annotated[str, StringConstraints(max_length=1024)] | None = None
    provisioning_progress: int | float | None = None
    api_port: int | str | None = None
    api_secret: Short | None = None
    cpu_usage: int | float | None = None
    cpu_temp: int | float | None = None
    cpu_id: Short | None = None
    memory_usage: int | float | None = None
    memory_total: int | float | None = None
    storage_block_device: Short | None = None
    storage_usage: int | float | None = None
    storage_total: int | float | None = None
    is_undervolted: bool | None = None
    apps: dict[Short, AppReport] | None = None

    def scalars(self) -> dict[str, Any]:
        """Every reported field except `apps`, as JSON values (extra fields included)."""
        data = self.model_dump(mode="json", exclude_unset=True, exclude={"apps"})
        return {k: v for k, v in data.items() if isinstance(v, Scalar)}


class LogLine(BaseModel):
    """One NDJSON line of `POST /device/v2/:uuid/log-stream`."""

    model_config = ConfigDict(extra="ignore")

    message: str
    timestamp: int | float | None = None
    isSystem: bool = False
    isStdErr: bool = False
    serviceId: int | None = None


class PinBody(BaseModel):
    """`PATCH /device/v3/{uuid}` body: the preloaded release a device pins itself to."""

    model_config = ConfigDict(extra="forbid")

    pinned_release: Annotated[str, StringConstraints(min_length=1, max_length=64,
                                                     pattern=r"^[\x21-\x7e]+$")] = Field(
        description="The full commit of a successful release of the device's own fleet.")


class PinReply(BaseModel):
    """200 reply: the device and the release it is now pinned to."""

    uuid: str
    pinned_release: str
