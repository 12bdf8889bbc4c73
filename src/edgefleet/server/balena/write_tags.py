"""Tag writes (`balena tag set|rm`): `device_tag`, `application_tag`, `release_tag` rows.
`tag set` is Pine's upsert: a POST, and on a unique-key conflict a PATCH of the value."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.server import tables as t
from edgefleet.server.balena.odata import ODataError
from edgefleet.server.balena.write_access import device_for, fleet_for

TAG_KEY = re.compile(r"^[^\s]{1,100}$")
MAX_VALUE = 10_000


@dataclass(frozen=True)
class TagKind:
    """One tag resource: its parent field, table, and the permission a write needs."""

    parent: str
    table: type[t.DeviceTag] | type[t.FleetTag] | type[t.ReleaseTag]
    column: str
    permission: str


TAGS: dict[str, TagKind] = {
    "device_tag": TagKind("device", t.DeviceTag, "device_id", "device.update"),
    "application_tag": TagKind("application", t.FleetTag, "fleet_id", "variable.write"),
    "release_tag": TagKind("release", t.ReleaseTag, "release_id", "release.push"),
}


def _parent_allowed(s: Session, kind: TagKind, parent_id: Any, user_id: int) -> int:
    """The parent's id, once the user may write its tags (404 / 403 otherwise)."""
    if kind.parent == "device":
        return device_for(s, parent_id, user_id).id
    if kind.parent == "application":
        return fleet_for(s, parent_id, user_id).id
    release = s.get(t.Release, parent_id) if isinstance(parent_id, int) else None
    if release is None:
        raise ODataError(f"no release {parent_id!r}", status=404, code="NotFound")
    fleet_for(s, release.fleet_id, user_id)
    return release.id


def _value(body: dict[str, Any]) -> str:
    value = body.get("value", "")
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        raise ODataError(f"value: a string of at most {MAX_VALUE} characters is needed")
    return value


def create_tag(s: Session, resource: str, body: dict[str, Any], user_id: int) -> int:
    """A new tag; a key already set on that parent is a unique-key conflict (409)."""
    kind = TAGS[resource]
    extra = sorted(set(body) - {kind.parent, "tag_key", "value"})
    if extra:
        raise ODataError(f"{resource}: cannot set {', '.join(extra)} (settable: "
                         f"{kind.parent}, tag_key, value)", code="NotImplemented")
    key = body.get("tag_key")
    if not isinstance(key, str) or not TAG_KEY.match(key):
        raise ODataError(f"tag_key: {key!r} is not a tag key (1-100 characters, no spaces)")
    value = _value(body)
    parent_id = _parent_allowed(s, kind, body.get(kind.parent), user_id)
    column = getattr(kind.table, kind.column)
    if s.execute(sa.select(kind.table.id).where(column == parent_id,
                                                kind.table.tag_key == key)).first():
        raise ODataError(f"Unique key constraint violated: tag {key!r} is already set on "
                         f"this {kind.parent}", status=409, code="Conflict")
    row = kind.table(tag_key=key, value=value, **{kind.column: parent_id})
    s.add(row)
    s.flush()
    return int(row.id)


def _rows(s: Session, resource: str, ids: list[int], user_id: int) -> list[Any]:
    kind = TAGS[resource]
    rows = list(s.execute(sa.select(kind.table).where(kind.table.id.in_(ids))).scalars())
    for row in rows:
        _parent_allowed(s, kind, getattr(row, kind.column), user_id)
    return rows


def update_tags(s: Session, resource: str, ids: list[int], body: dict[str, Any],
                user_id: int) -> None:
    """Set the value of tags (only `value` may change)."""
    extra = sorted(set(body) - {"value"})
    if extra:
        raise ODataError(f"{resource}: only value can change (not {', '.join(extra)})",
                         code="NotImplemented")
    value = _value(body)
    for row in _rows(s, resource, ids, user_id):
        row.value = value


def delete_tags(s: Session, resource: str, ids: list[int], user_id: int) -> None:
    for row in _rows(s, resource, ids, user_id):
        s.delete(row)
