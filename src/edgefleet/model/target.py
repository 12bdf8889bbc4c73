"""Target state as the cloud sends it (v3, compat §2): the wire format, validated.

`model.resolve` turns a `TargetState` into a `DesiredState` of fully resolved `ServiceSpec`s.
`model.formats` reads the other two formats (apps.json, v2 local) into this one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Wire(BaseModel):
    # Unknown keys are kept (forward compatibility with newer clouds) but never acted on.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _string_map(value: Any) -> Any:
    """Compose coercions: `{mtu: 1500}` → `{"mtu": "1500"}`, `["a=b"]` → `{"a": "b"}`, booleans
    → `"true"`/`"false"`, null → `""`."""
    if isinstance(value, list):
        value = {str(v).partition("=")[0]: str(v).partition("=")[2] for v in value}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif v is None:
                v = ""
            elif isinstance(v, int | float):
                v = str(v)
            out[str(k)] = v
        return out
    return value


class ServiceTarget(_Wire):
    """One service of a release, as the cloud describes it."""

    id: int = 0
    image_id: int = 0
    image: str
    environment: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    running: bool = True
    contract: dict[str, Any] | None = None
    composition: dict[str, Any] = Field(default_factory=dict)

    _maps = field_validator("environment", "labels", mode="before")(
        lambda v: _string_map(v))


class NetworkTarget(_Wire):
    """A network of a release (compose `networks:` entry)."""

    driver: str | None = None
    driver_opts: dict[str, str] = Field(default_factory=dict)
    ipam: dict[str, Any] = Field(default_factory=dict)
    enable_ipv6: bool = False
    internal: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    config_only: bool = False
    external: bool | dict[str, Any] = False

    _maps = field_validator("driver_opts", "labels", mode="before")(
        lambda v: _string_map(v))


class VolumeTarget(_Wire):
    """A named volume of a release."""

    driver: str | None = None
    driver_opts: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    external: bool | dict[str, Any] = False

    _maps = field_validator("driver_opts", "labels", mode="before")(
        lambda v: _string_map(v))


class ReleaseTarget(_Wire):
    """One release (keyed by commit) of an app."""

    id: int = 0
    services: dict[str, ServiceTarget] = Field(default_factory=dict)
    volumes: dict[str, VolumeTarget] = Field(default_factory=dict)
    networks: dict[str, NetworkTarget] = Field(default_factory=dict)


class AppTarget(_Wire):
    """One app; only the first release is used."""

    id: int
    name: str = ""
    app_class: Literal["fleet", "app", "block"] = Field(default="fleet", alias="class")
    is_host: bool = False
    releases: dict[str, ReleaseTarget] = Field(default_factory=dict)

    @property
    def release(self) -> tuple[str, ReleaseTarget] | None:
        """The (commit, release) the device should run, or None for "no release"."""
        for commit, release in self.releases.items():
            return commit, release
        return None


class DeviceTarget(_Wire):
    """The target for one device: its name, config variables and apps (keyed by app uuid)."""

    name: str = ""
    config: dict[str, str] = Field(default_factory=dict)
    apps: dict[str, AppTarget] = Field(default_factory=dict)


class TargetState(BaseModel):
    """The v3 target state document `{<deviceUuid>: DeviceTarget}`, for one device."""

    model_config = ConfigDict(frozen=True)

    device_uuid: str
    device: DeviceTarget

    def to_wire(self) -> dict[str, Any]:
        """The v3 JSON document."""
        return {self.device_uuid: self.device.model_dump(mode="json", by_alias=True)}
