"""What the engine has now: supervised containers, images, networks and volumes, as observed."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgefleet.model import naming

ContainerStatus = Literal[
    "created", "running", "paused", "restarting", "removing", "exited", "dead"
]


class _Observed(BaseModel):
    model_config = ConfigDict(frozen=True)


class ContainerState(_Observed):
    """One supervised container as the engine reports it."""

    id: str
    name: str
    image: str
    """The image reference it was created from (Config.Image)."""
    image_id: str
    """The id (`sha256:…`) of the image it runs."""
    labels: dict[str, str] = Field(default_factory=dict)
    status: ContainerStatus = "created"
    exit_code: int | None = None
    restart_count: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    health: Literal["starting", "healthy", "unhealthy"] | None = None
    networks: tuple[str, ...] = ()
    """Engine names of the networks it is attached to."""
    stop_timeout_s: float | None = None
    """Its own grace period (Config.StopTimeout, from the service's `stop_grace_period` when
    it was created); None when the engine reports none (its default, 10 s, applies)."""

    @property
    def app_uuid(self) -> str:
        return self.labels.get(naming.APP_UUID, "")

    @property
    def app_id(self) -> int:
        raw = self.labels.get(naming.APP_ID, "0")
        return int(raw) if raw.isdigit() else 0

    @property
    def service_name(self) -> str:
        return self.labels.get(naming.SERVICE_NAME, "")

    @property
    def config_hash(self) -> str:
        return self.labels.get(naming.CONFIG_HASH, "")

    @property
    def name_parts(self) -> naming.ContainerNameParts | None:
        return naming.parse_container_name(self.name)

    @property
    def is_running(self) -> bool:
        return self.status in ("running", "restarting", "paused")


class ImageState(_Observed):
    """One image the engine holds."""

    id: str
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    size: int = 0
    labels: dict[str, str] = Field(default_factory=dict)


class NetworkState(_Observed):
    """One network (supervised or not: the planner needs to know names are taken)."""

    id: str
    name: str
    driver: str = "bridge"
    labels: dict[str, str] = Field(default_factory=dict)
    config_hash: str = ""


class VolumeState(_Observed):
    """One volume."""

    name: str
    driver: str = "local"
    labels: dict[str, str] = Field(default_factory=dict)


# the last image index built (see EngineState._images_by_ref); one entry
_LAST_INDEX: list[tuple[tuple[ImageState, ...], dict[str, ImageState]]] = []


class EngineState(_Observed):
    """A snapshot of what the engine runs, taken in a few API calls."""

    containers: tuple[ContainerState, ...] = ()
    images: tuple[ImageState, ...] = ()
    networks: tuple[NetworkState, ...] = ()
    volumes: tuple[VolumeState, ...] = ()

    @cached_property
    def _images_by_ref(self) -> dict[str, ImageState]:
        """Every id, tag and digest → its image (first one wins, as in `images` order).
        A cached property, not a private attribute: it stays out of equality and dumps.
        Successive snapshots share the engine adapter's parsed image objects while no image
        event arrives, so the last index is reused when the images are the same objects."""
        if _LAST_INDEX:
            images, index = _LAST_INDEX[0]
            if len(images) == len(self.images) and all(
                    a is b for a, b in zip(images, self.images, strict=True)):
                return index
        index = {}
        for image in self.images:
            for key in (image.id, image.id.removeprefix("sha256:"), *image.repo_tags,
                        *image.repo_digests):
                index.setdefault(key, image)
        _LAST_INDEX[:] = [(self.images, index)]
        return index

    def image_for(self, ref: str) -> ImageState | None:
        """The image a reference (name:tag, name@digest or id) resolves to, if present.
        The planner asks this for every service on every pass, so the snapshot indexes its
        images once instead of scanning them all for each lookup."""
        index = self._images_by_ref
        return index.get(ref) or index.get(_normalise_ref(ref))


def _normalise_ref(ref: str) -> str:
    """`name` → `name:latest`; a `name:tag@digest` reference is matched by its digest."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name = name[: len(name) - len(last)] + last.split(":", 1)[0]
        return f"{name}@{digest}"
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last else f"{ref}:latest"
