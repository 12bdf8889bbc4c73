"""`balena deploy`: the CLI builds images itself and records the release through `/v7/`
(POST release, service, image, image__is_part_of__release; PATCH image, then release). Here
those become edgefleet's release, service and release-image rows; the release's v3 target is
made when the CLI marks it `success`, exactly as after a server-side build."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from edgefleet.model.errors import InvalidInput
from edgefleet.model.formats import release_from_compose, validate
from edgefleet.model.target import AppTarget, DeviceTarget, TargetState
from edgefleet.model.timeutil import now_ms
from edgefleet.server import tables as t
from edgefleet.server.balena.odata import ODataError
from edgefleet.server.builder import BuildTarget
from edgefleet.server.releases import PushedImage, fail_release, finish_release
from edgefleet.server.rights import may

IGNORED = ("image_label", "image_environment_variable")
"""Accepted and not stored: labels and environment are in the release's composition."""


def _release_of(s: Session, release_id: Any, user_id: int) -> tuple[t.Release, t.Fleet]:
    rel = s.get(t.Release, release_id) if isinstance(release_id, int) else None
    fleet = s.get(t.Fleet, rel.fleet_id) if rel is not None else None
    if rel is None or fleet is None or not may(s, user_id, fleet, "release.push"):
        raise ODataError(f"no release {release_id!r}", status=404, code="NotFound")
    return rel, fleet


def _checked(composition: dict[str, Any]) -> dict[str, Any]:
    """The CLI's normalised compose document without its `null`s (unset options) and its
    `build` sections (the CLI built the images; build args may be secrets, and devices never
    build), refused here, before anything is pushed, if the devices would refuse it."""
    services = {name: {k: v for k, v in (conf or {}).items() if v is not None and k != "build"}
                for name, conf in composition["services"].items()}
    doc = {k: v for k, v in composition.items() if k in ("version", "volumes", "networks")}
    doc["services"] = services
    try:
        release = release_from_compose(compose_yaml=yaml.safe_dump(doc), images={
            name: f"placeholder/{name.lower()}:check" for name in services})
        validate(target=TargetState(device_uuid="check", device=DeviceTarget(apps={
            "check": AppTarget(id=1, releases={"check": release})})))
    except InvalidInput as exc:
        raise ODataError(f"composition: {exc}") from None
    return doc


def create_release(s: Session, body: dict[str, Any], user_id: int) -> int:
    fleet = s.get(t.Fleet, body.get("belongs_to__application")) \
        if isinstance(body.get("belongs_to__application"), int) else None
    if fleet is None or not may(s, user_id, fleet, "release.push"):
        raise ODataError(f"no application {body.get('belongs_to__application')!r}",
                         status=404, code="NotFound")
    composition, commit = body.get("composition"), body.get("commit")
    if not isinstance(composition, dict) or not isinstance(composition.get("services"), dict):
        raise ODataError("composition: a compose document with services is needed")
    composition = _checked(composition)
    if not isinstance(commit, str) or not commit.isalnum() or not 7 <= len(commit) <= 64:
        raise ODataError("commit: 7-64 letters or digits")
    if s.execute(sa.select(t.Release.id).where(t.Release.commit == commit)).first():
        raise ODataError(f"Unique key constraint violated: commit {commit}", status=409,
                         code="Conflict")
    rel = t.Release(fleet_id=fleet.id, commit=commit, status="building",
                    composition=json.dumps(composition), target="{}",
                    created_ms=now_ms())
    s.add(rel)
    s.flush()
    return rel.id


def create_service(s: Session, body: dict[str, Any], user_id: int) -> int:
    fleet = s.get(t.Fleet, body.get("application")) \
        if isinstance(body.get("application"), int) else None
    name = body.get("service_name")
    if fleet is None or not may(s, user_id, fleet, "release.push"):
        raise ODataError(f"no application {body.get('application')!r}", status=404,
                         code="NotFound")
    if not isinstance(name, str) or not 0 < len(name) <= 255:
        raise ODataError("service_name: 1-255 characters")
    if s.execute(sa.select(t.Service.id).where(t.Service.fleet_id == fleet.id,
                                               t.Service.name == name)).first():
        raise ODataError(f"Unique key constraint violated: service {name}", status=409,
                         code="Conflict")
    svc = t.Service(fleet_id=fleet.id, name=name)
    s.add(svc)
    s.flush()
    return svc.id


def create_image(s: Session, body: dict[str, Any], registry: str | None, user_id: int) -> int:
    """An image of the fleet's newest release still building (the CLI links it with
    `image__is_part_of__release` next); its location is where the CLI pushes it."""
    svc = s.get(t.Service, body.get("is_a_build_of__service")) \
        if isinstance(body.get("is_a_build_of__service"), int) else None
    fleet = s.get(t.Fleet, svc.fleet_id) if svc is not None else None
    if svc is None or fleet is None or not may(s, user_id, fleet, "release.push"):
        raise ODataError(f"no service {body.get('is_a_build_of__service')!r}", status=404,
                         code="NotFound")
    if not registry:
        raise ODataError("this server has no registry to push images to", status=409,
                         code="Conflict")
    rel = s.execute(sa.select(t.Release).where(
        t.Release.fleet_id == fleet.id, t.Release.status == "building")
        .order_by(t.Release.id.desc()).limit(1)).scalar()
    if rel is None:
        raise ODataError("create the release first: POST /v7/release")
    repo = BuildTarget(registry=registry, fleet_uuid=fleet.uuid, commit=rel.commit)
    row = t.ReleaseImage(release_id=rel.id, service_id=svc.id,
                         ref=f"{repo.repo(svc.name)}:{rel.commit}")
    s.add(row)
    s.flush()
    return row.id


def link_image(s: Session, body: dict[str, Any], user_id: int) -> int:
    rel, _fleet = _release_of(s, body.get("is_part_of__release"), user_id)
    img = s.get(t.ReleaseImage, body.get("image")) if isinstance(body.get("image"), int) \
        else None
    if img is None:
        raise ODataError(f"no image {body.get('image')!r}", status=404, code="NotFound")
    _release_of(s, img.release_id, user_id)
    img.release_id = rel.id
    return img.id


def update_image(s: Session, image_id: int, body: dict[str, Any], user_id: int) -> None:
    img = s.get(t.ReleaseImage, image_id)
    if img is None:
        return
    _release_of(s, img.release_id, user_id)
    digest = body.get("content_hash")
    if isinstance(digest, str) and digest.startswith("sha256:"):
        img.digest = digest
        img.ref = img.ref.rsplit(":", 1)[0] + "@" + digest
    size = body.get("image_size")
    if isinstance(size, int | str) and str(size).isdigit():
        img.size = int(size)


def update_release(s: Session, release_id: int, body: dict[str, Any], user_id: int) -> None:
    """`status: success` makes the release runnable (its v3 target); `failed` or
    `cancelled` records the failure. A release already finished is left as it is.
    Invalidating a release or making it a draft is refused (edgefleet has neither)."""
    rel, _fleet = _release_of(s, release_id, user_id)
    if body.get("is_invalidated") is True:  # `balena release invalidate`
        raise ODataError("is_invalidated: edgefleet keeps no invalid releases; to keep devices"
                         " off this one, pin the fleet or the devices to another release"
                         " (balena fleet pin / balena device pin)", code="NotImplemented")
    if body.get("is_final") is False:
        raise ODataError("is_final: edgefleet releases are final once built (no drafts)",
                         code="NotImplemented")
    status = body.get("status")
    if rel.status != "building" or status in (None, "running"):
        return
    if status != "success":
        fail_release(s, release=rel, error=f"the client marked the release {status}")
        return
    rows = [(img, str(name)) for img, name in s.execute(
        sa.select(t.ReleaseImage, t.Service.name)
        .join(t.Service, t.Service.id == t.ReleaseImage.service_id)
        .where(t.ReleaseImage.release_id == rel.id)).all()]
    missing = [name for img, name in rows if not img.digest]
    if missing:
        raise ODataError(f"images not pushed yet: {', '.join(missing)}", status=409,
                         code="Conflict")
    images = [PushedImage(service=name, ref=img.ref, digest=img.digest, size=img.size)
              for img, name in rows]
    for img, _name in rows:
        s.delete(img)
    s.flush()
    finish_release(s, release=rel, images=images)
