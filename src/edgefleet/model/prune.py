"""Which images may go (pure): shared by the planner's cleanup after an update,
`edgefleet supervisor prune` and `edgefleet engine prune`.

An image is never a candidate while any container (running or stopped, supervised or not)
uses it, or while a desired service references it. Beyond that only two kinds qualify:
- *unused*: an image this supervisor pulled (a `managed` reference) that no release uses;
- *dangling*: an image with neither a tag nor a digest (superseded builds, interrupted
  loads). Images pulled by digest have no tag but keep their digest, so they never count.
Volumes and networks are never pruned here: volumes hold customer data (seed 000 §11.1.2)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgefleet.model.engine_state import EngineState, ImageState

UNUSED = "pulled by the supervisor, no release uses it"
DANGLING = "dangling (no tag, no digest, no container)"


@dataclass(frozen=True)
class PruneCandidate:
    """An image that may be deleted, and why."""

    image_id: str
    names: tuple[str, ...]
    size: int
    reason: str
    managed_refs: tuple[str, ...] = ()
    """The supervisor's references that resolve to it (its store records to drop)."""


def prunable_images(*, observed: EngineState, used_ids: Iterable[str],
                    desired_refs: Iterable[str], managed_refs: Iterable[str] = (),
                    dangling: bool = False) -> list[PruneCandidate]:
    """The images that may be deleted, sorted by id."""
    keep = set(used_ids)
    for ref in desired_refs:
        img = observed.image_for(ref)
        if img is not None:
            keep.add(img.id)
    found: dict[str, PruneCandidate] = {}
    by_id: dict[str, list[str]] = {}
    for ref in sorted(set(managed_refs)):
        img = observed.image_for(ref)
        if img is not None and img.id not in keep:
            by_id.setdefault(img.id, []).append(ref)
    for image_id, refs in by_id.items():
        img = _by_id(observed, image_id)
        found[image_id] = PruneCandidate(image_id=image_id, names=_names(img), size=img.size,
                                         reason=UNUSED, managed_refs=tuple(refs))
    if dangling:
        for img in observed.images:
            if img.id in keep or img.id in found or _names(img):
                continue
            found[img.id] = PruneCandidate(image_id=img.id, names=(), size=img.size,
                                           reason=DANGLING)
    return [found[k] for k in sorted(found)]


def _by_id(observed: EngineState, image_id: str) -> ImageState:
    return next(i for i in observed.images if i.id == image_id)


def _names(img: ImageState) -> tuple[str, ...]:
    tags = tuple(t for t in img.repo_tags if t != "<none>:<none>")
    digests = tuple(d for d in img.repo_digests if d != "<none>@<none>")
    return tags + digests
