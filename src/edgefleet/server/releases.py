"""Recording releases: started (building), finished (images pushed → v3 release) or failed."""

from __future__ import annotations

import json
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from edgefleet.model.formats import release_from_compose
from edgefleet.model.timeutil import now_ms
from edgefleet.server import tables as t

SINGLE_SERVICE = "main"
"""The service name of a release pushed as a single Dockerfile (balena's)."""


@dataclass(frozen=True)
class PushedImage:
    """A service image as it is in the registry."""

    service: str
    ref: str
    """What devices pull: `<registry>/<repo>@sha256:...` (or `:tag` without a digest)."""
    digest: str
    size: int = 0


def start_release(s: Session, *, fleet: t.Fleet, composition: dict[str, Any]) -> t.Release:
    """A new release in state `building` with a fresh commit."""
    rel = t.Release(fleet_id=fleet.id, commit=uuidlib.uuid4().hex, status="building",
                    composition=json.dumps(composition), target="{}", created_ms=now_ms())
    s.add(rel)
    s.flush()
    return rel


def service_ids(s: Session, *, fleet_id: int, names: list[str]) -> dict[str, int]:
    """Stable ids of a fleet's services (made on first use)."""
    rows = {sv.name: sv.id for sv in s.execute(sa.select(t.Service).where(
        t.Service.fleet_id == fleet_id)).scalars()}
    for name in names:
        if name not in rows:
            sv = t.Service(fleet_id=fleet_id, name=name)
            s.add(sv)
            s.flush()
            rows[name] = sv.id
    return rows


def finish_release(s: Session, *, release: t.Release, images: list[PushedImage]) -> None:
    """Record the pushed images and the v3 release devices will get; status `success`."""
    composition = json.loads(release.composition)
    ids = service_ids(s, fleet_id=release.fleet_id, names=[i.service for i in images])
    image_ids: dict[str, int] = {}
    for img in images:
        row = t.ReleaseImage(release_id=release.id, service_id=ids[img.service], ref=img.ref,
                             digest=img.digest, size=img.size)
        s.add(row)
        s.flush()
        image_ids[img.service] = row.id
    refs = {i.service: i.ref for i in images}
    if composition.get("services"):
        target = release_from_compose(compose_yaml=yaml.safe_dump(composition), images=refs,
                                      release_id=release.id)
    else:
        target = release_from_compose(compose_yaml=yaml.safe_dump(
            {"services": {SINGLE_SERVICE: {}}}), images=refs, release_id=release.id)
    doc = target.model_dump(mode="json", by_alias=True, exclude_none=True)
    for name, svc in doc["services"].items():
        svc["id"], svc["image_id"] = ids[name], image_ids[name]
    release.target = json.dumps(doc)
    release.status = "success"
    release.finished_ms = now_ms()


def fail_release(s: Session, *, release: t.Release, error: str) -> None:
    """A failed build: recorded, never sent to a device."""
    release.status = "failed"
    release.error = error
    release.finished_ms = now_ms()
