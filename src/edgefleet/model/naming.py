"""How supervised objects are named and labelled on the engine (balena-compatible, compat §6)."""

from __future__ import annotations

from dataclasses import dataclass

SUPERVISED = "io.balena.supervised"
APP_ID = "io.balena.app-id"
APP_UUID = "io.balena.app-uuid"
SERVICE_ID = "io.balena.service-id"
SERVICE_NAME = "io.balena.service-name"
UPDATE_STRATEGY = "io.balena.update.strategy"
HANDOVER_TIMEOUT = "io.balena.update.handover-timeout"
FEATURE_PREFIX = "io.balena.features."
# edgefleet's own labels
CONFIG_HASH = "io.edgefleet.config-hash"
SCOPE = "io.edgefleet.scope"
"""Which supervisor owns an object: lets several supervisors share one engine."""

LEGACY_PREFIX = "io.resin."
BALENA_PREFIX = "io.balena."


def normalise_label_name(name: str) -> str:
    """Read `io.resin.*` as `io.balena.*`."""
    if name.startswith(LEGACY_PREFIX):
        return BALENA_PREFIX + name[len(LEGACY_PREFIX) :]
    return name


def container_name(*, service_name: str, image_id: int, release_id: int, commit: str) -> str:
    """`<serviceName>_<imageId>_<releaseId>_<commit>`."""
    return f"{service_name}_{image_id}_{release_id}_{commit}"


@dataclass(frozen=True)
class ContainerNameParts:
    """The parts of a supervised container's name."""

    service_name: str
    image_id: int
    release_id: int
    commit: str


def parse_container_name(name: str) -> ContainerNameParts | None:
    """Split a supervised container name; None when it does not follow the convention."""
    name = name.lstrip("/")
    parts = name.rsplit("_", 3)
    if len(parts) != 4:
        return None
    service, image_id, release_id, commit = parts
    if not (image_id.isdigit() and release_id.isdigit() and service):
        return None
    return ContainerNameParts(service, int(image_id), int(release_id), commit)


def volume_name(*, app_id: int, name: str) -> str:
    """`<appId>_<name>`."""
    return f"{app_id}_{name}"


def network_name(*, app_uuid: str, name: str) -> str:
    """`<appUuid>_<name>`."""
    return f"{app_uuid}_{name}"


def local_image_name(service_name: str) -> str:
    """The tag balena CLI local mode gives a service image it built on the device."""
    return f"local_image_{service_name}:latest"
