"""POST, PATCH and DELETE on the balena resources, as changes to edgefleet's own rows.
PATCH and DELETE address rows by key or `$filter`; only rows the user can see are touched."""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.model.timeutil import now_ms
from edgefleet.server import audit, roles
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.balena import write_keys, write_orgs, write_tags
from edgefleet.server.balena import write_release as wr
from edgefleet.server.balena.compile import FilterCompiler, Source
from edgefleet.server.balena.odata import ODataError, Query
from edgefleet.server.balena.read import key_condition
from edgefleet.server.balena.schema import DT_IDS, SERVICE_INSTALL_FACTOR
from edgefleet.server.balena.write_access import PERMISSION as PERMISSION
from edgefleet.server.balena.write_access import device_for as _device
from edgefleet.server.balena.write_access import fleet_for as _fleet
from edgefleet.server.devicetypes import DEVICE_TYPES, arch_of, same_arch
from edgefleet.server.rights import Rights
from edgefleet.server.views import resolve_release

VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:]{0,254}$")
"""As the user API takes them (`user_schemas.VarName`), and fleet names (`Name`):"""
FLEET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_VALUE = 10_000
VARIABLES: dict[str, tuple[str, str, bool]] = {
    "application_environment_variable": ("application", "env", False),
    "application_config_variable": ("application", "config", False),
    "service_environment_variable": ("service", "env", False),
    "device_environment_variable": ("device", "env", True),
    "device_config_variable": ("device", "config", True),
    "device_service_environment_variable": ("service_install", "env", True),
}
"""resource → (parent field, kind, device level)."""
UNIQUE = "Unique key constraint violated"
DEPLOY: dict[str, Callable[[Session, dict[str, Any], int, str | None], int]] = {
    "release": lambda s, body, user, _reg: wr.create_release(s, body, user),
    "service": lambda s, body, user, _reg: wr.create_service(s, body, user),
    "image": lambda s, body, user, reg: wr.create_image(s, body, reg, user),
    "image__is_part_of__release": lambda s, body, user, _reg: wr.link_image(s, body, user),
}
"""What `balena deploy` creates (see write_release.py)."""


def matching_ids(s: Session, *, query: Query, user_id: int) -> list[int]:
    """Ids of the rows a PATCH or DELETE addresses (key and/or $filter)."""
    src = Source.of(query.resource)
    stmt = sa.select(src.sub.c.id).where(src.visible(user_id))
    if query.key is not None:
        stmt = stmt.where(key_condition(src, query.key))
    if query.options.filter is not None:
        stmt = stmt.where(FilterCompiler(user_id=user_id).compile(query.options.filter, src))
    return [int(i) for i in s.execute(stmt).scalars()]


def _allowed(body: dict[str, Any], resource: str, fields: set[str]) -> None:
    extra = sorted(set(body) - fields)
    if extra:
        raise ODataError(f"{resource}: cannot set {', '.join(extra)} on edgefleet "
                         f"(settable: {', '.join(sorted(fields))})", code="NotImplemented")


WRITE_PERMISSIONS: dict[tuple[str, str], str] = {
    ("POST", "application"): "fleet.create", ("PATCH", "application"): "fleet.pin",
    ("DELETE", "application"): "fleet.delete", ("PATCH", "device"): "device.update",
    ("DELETE", "device"): "device.delete",
}
"""The permission (`roles`) a `/v7` write of a resource needs; variables need
`variable.write`, release parts `release.push` (see `permission_for`)."""
def permission_for(method: str, resource: str) -> str:
    if resource in write_tags.TAGS:
        return write_tags.TAGS[resource].permission
    if resource in VARIABLES:
        return "variable.write"
    if resource in DEPLOY or resource in wr.IGNORED or resource in ("release", "image"):
        return "release.push"
    return WRITE_PERMISSIONS.get((method, resource), "fleet.read")


def create(s: Session, *, resource: str, body: dict[str, Any], user_id: int,
           registry: str | None) -> int:
    """A new row; its id."""
    if resource in DEPLOY:
        return DEPLOY[resource](s, body, user_id, registry)
    if resource in wr.IGNORED:
        return 0
    if resource == "application":
        return _create_application(s, body, user_id)
    if resource in VARIABLES:
        return _create_variable(s, resource, body, user_id)
    if resource == write_keys.RESOURCE:
        return write_keys.create_key(s, body, user_id)
    if resource == write_orgs.RESOURCE:
        return write_orgs.create_org(s, body, user_id)
    if resource in write_tags.TAGS:
        return write_tags.create_tag(s, resource, body, user_id)
    raise ODataError(f"POST /v7/{resource} is not supported by edgefleet",
                     status=405, code="MethodNotAllowed")


def _create_application(s: Session, body: dict[str, Any], user_id: int) -> int:
    _allowed(body, "application", {"app_name", "is_for__device_type", "organization", "uuid",
                                   "is_of__class"})
    name = _fleet_name(body.get("app_name"))
    slugs = {i: slug for slug, i in DT_IDS.items()}
    device_type = slugs.get(body.get("is_for__device_type"))  # type: ignore[arg-type]
    if device_type is None:
        raise ODataError(f"is_for__device_type: unknown device type id "
                         f"{body.get('is_for__device_type')!r}; known: "
                         + ", ".join(sorted(DEVICE_TYPES)))
    rights = Rights.of_user(s, user_id)
    personal = s.execute(sa.select(o.Organization.id).where(
        o.Organization.personal_of == user_id)).scalar()
    org_id = body.get("organization", personal)
    if not roles.role_allows(rights.org_roles.get(org_id) if isinstance(org_id, int)
                             else None, "fleet.create"):
        raise ODataError("organization: your role there may not create fleets",
                         status=403, code="Forbidden")
    if body.get("is_of__class", "fleet") != "fleet":
        raise ODataError("is_of__class: edgefleet has fleets only", code="NotImplemented")
    if s.execute(sa.select(t.Fleet.id).where(
            sa.or_(t.Fleet.organization_id == org_id, t.Fleet.owner_id == user_id),
            t.Fleet.name == name)).first():
        raise ODataError(UNIQUE + f": a fleet named {name!r} exists", status=409,
                         code="Conflict")
    fleet = t.Fleet(uuid=str(body.get("uuid") or uuidlib.uuid4().hex), name=name,
                    owner_id=user_id, organization_id=org_id, device_type=device_type,
                    created_ms=now_ms())
    s.add(fleet)
    s.flush()
    return fleet.id


def _fleet_name(name: Any) -> str:
    if not isinstance(name, str) or not FLEET_NAME.match(name):
        raise ODataError(f"app_name: {name!r} is not a fleet name (1-128 letters, digits, "
                         "'-', '_' or '.', starting with a letter or digit)")
    return name


def _value(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        raise ODataError(f"value: a string of at most {MAX_VALUE} characters is needed")
    return value


def _scope(s: Session, parent: str, value: Any, user_id: int) -> tuple[int, int | None, str]:
    """(fleet id, device id, service name) of a variable's parent."""
    if parent == "application":
        return _fleet(s, value, user_id).id, None, ""
    if parent == "device":
        d = _device(s, value, user_id)
        return d.fleet_id, d.id, ""
    if parent == "service":
        svc = s.get(t.Service, value) if isinstance(value, int) else None
        if svc is None:
            raise ODataError(f"no service {value!r}", status=404, code="NotFound")
        return _fleet(s, svc.fleet_id, user_id).id, None, svc.name
    if not isinstance(value, int):
        raise ODataError(f"no service install {value!r}", status=404, code="NotFound")
    d = _device(s, value // SERVICE_INSTALL_FACTOR, user_id)
    svc = s.get(t.Service, value % SERVICE_INSTALL_FACTOR)
    if svc is None or svc.fleet_id != d.fleet_id:
        raise ODataError(f"no service install {value!r}", status=404, code="NotFound")
    return d.fleet_id, d.id, svc.name


def _create_variable(s: Session, resource: str, body: dict[str, Any], user_id: int) -> int:
    parent, kind, _device_level = VARIABLES[resource]
    _allowed(body, resource, {parent, "name", "value"})
    name, value = body.get("name"), body.get("value")
    if not isinstance(name, str) or not VAR_NAME.match(name):
        raise ODataError(f"name: {name!r} is not a variable name (letters, digits, '_', "
                         "not starting with a digit)")
    value = _value(value)
    fleet_id, device_id, service = _scope(s, parent, body.get(parent), user_id)
    exists = s.execute(sa.select(t.Variable.id).where(
        t.Variable.kind == kind, t.Variable.fleet_id == fleet_id,
        t.Variable.device_id == device_id if device_id else t.Variable.device_id.is_(None),
        t.Variable.service == service, t.Variable.name == name)).first()
    if exists:
        raise ODataError(f"{UNIQUE}: {name} is already set there", status=409,
                         code="Conflict")
    row = t.Variable(kind=kind, fleet_id=fleet_id, device_id=device_id, service=service,
                     name=name, value=value)
    s.add(row)
    s.flush()
    return row.id


def update(s: Session, *, resource: str, ids: list[int], body: dict[str, Any],
           user_id: int) -> None:
    if resource in write_tags.TAGS:
        write_tags.update_tags(s, resource, ids, body, user_id)
        return
    for row_id in ids:
        if resource == "application":
            _allowed(body, resource, {"app_name", "should_track_latest_release",
                                      "should_be_running__release"})
            fleet = _fleet(s, row_id, user_id)
            if "app_name" in body:
                fleet.name = _fleet_name(body["app_name"])
            if body.get("should_track_latest_release") is True:
                fleet.target_release_id = None
            elif body.get("should_be_running__release") is not None:
                fleet.target_release_id = _release(s, fleet, body["should_be_running__release"])
        elif resource == "device":
            _not_deactivated(s, row_id, body, user_id)
            _allowed(body, resource, {"device_name", "is_pinned_on__release", "note",
                                      "belongs_to__application"})
            device = _device(s, row_id, user_id)
            if "belongs_to__application" in body:
                _move(s, device, body["belongs_to__application"], user_id)
            if "device_name" in body:
                name = body["device_name"]
                if not isinstance(name, str) or not 0 < len(name) <= 255:
                    raise ODataError("device_name: 1-255 characters")
                device.name = name
            if "note" in body:
                _add_note(s, device, body["note"], user_id)
            if "is_pinned_on__release" in body:
                pin = body["is_pinned_on__release"]
                device.pinned_release_id = None if pin is None else _release(
                    s, _fleet(s, device.fleet_id, user_id), pin)
        elif resource == "release":
            wr.update_release(s, row_id, body, user_id)
        elif resource == "image":
            wr.update_image(s, row_id, body, user_id)
        elif resource in VARIABLES:
            _allowed(body, resource, {"value"})
            var = s.get(t.Variable, row_id)
            if var is not None:
                var.value = _value(body.get("value", var.value))
        else:
            raise ODataError(f"PATCH /v7/{resource} is not supported by edgefleet",
                             status=405, code="MethodNotAllowed")


def _not_deactivated(s: Session, device_id: int, body: dict[str, Any], user_id: int) -> None:
    """`balena device deactivate` (`is_active: false`) is about balenaCloud's billing, which
    edgefleet has none of: refused, saying what to do instead."""
    if "is_active" in body:
        uuid = _device(s, device_id, user_id).uuid
        raise ODataError("is_active: edgefleet does not deactivate devices (balena's "
                         "deactivation is a billing state; edgefleet bills nothing). To stop "
                         f"managing the device, remove it: balena device rm {uuid} (or "
                         f"edgefleet device rm {uuid[:7]})", status=400, code="NotImplemented")


def _move(s: Session, device: t.Device, fleet_id: Any, user_id: int) -> None:
    """`balena device move`: the device joins another fleet the user may update devices of,
    built for a device type of the same CPU architecture (as registering checks); its pin
    (a release of the old fleet) is dropped and its own variables go with it."""
    dest = _fleet(s, fleet_id, user_id)
    if dest.id == device.fleet_id:
        return
    if not same_arch(device_type=device.device_type, fleet_type=dest.device_type):
        raise ODataError(f"belongs_to__application: device {device.uuid[:7]} is a "
                         f"{device.device_type} ({arch_of(device.device_type)}); fleet "
                         f"{dest.name!r} is for {dest.device_type} "
                         f"({arch_of(dest.device_type)}) devices: move it to a fleet for "
                         f"{arch_of(device.device_type)} devices",
                         status=400, code="BadRequest")
    source = s.get(t.Fleet, device.fleet_id)
    device.fleet_id, device.pinned_release_id = dest.id, None
    s.execute(sa.update(t.Variable).where(t.Variable.device_id == device.id)
              .values(fleet_id=dest.id))
    user = s.get(t.User, user_id)
    audit.record(s, actor=user.username if user is not None else str(user_id),
                 action="device.move", device=device,
                 target=f"from {source.name if source else '?'} to {dest.name}")


def _add_note(s: Session, device: t.Device, text: Any, user_id: int) -> None:
    """`balena device note`: a line of the device's running notes (those of `edgefleet
    device note` and the dashboard); the newest is the device's `note`."""
    if not isinstance(text, str) or len(text) > MAX_VALUE:
        raise ODataError(f"note: a string of at most {MAX_VALUE} characters is needed")
    user = s.get(t.User, user_id)
    name = user.username if user is not None else str(user_id)
    note = t.DeviceNote(device_id=device.id, username=name, created_ms=now_ms(), text=text)
    s.add(note)
    s.flush()
    audit.record(s, actor=name, action="device.note", device=device, target=f"note {note.id}")


def _release(s: Session, fleet: t.Fleet, release_id: Any) -> int:
    rel = s.get(t.Release, release_id) if isinstance(release_id, int) else None
    if rel is None or rel.fleet_id != fleet.id:
        raise ODataError(f"no release {release_id!r} in this fleet", status=404,
                         code="NotFound")
    return resolve_release(s, fleet=fleet, commit=rel.commit).id


def delete(s: Session, *, resource: str, ids: list[int], user_id: int) -> None:
    if resource == write_keys.RESOURCE:
        write_keys.delete_keys(s, ids, user_id)
        return
    if resource == write_keys.API_KEY:
        write_keys.revoke_tokens(s, ids, user_id)
        return
    if resource in write_tags.TAGS:
        write_tags.delete_tags(s, resource, ids, user_id)
        return
    for row_id in ids:
        if resource == "application":
            s.delete(_fleet(s, row_id, user_id))
        elif resource == "device":
            device = _device(s, row_id, user_id)
            s.execute(sa.delete(t.ApiKey).where(t.ApiKey.device_id == device.id))
            s.execute(sa.delete(t.Variable).where(t.Variable.device_id == device.id))
            s.delete(device)
        elif resource in VARIABLES:
            s.execute(sa.delete(t.Variable).where(t.Variable.id == row_id))
        else:
            raise ODataError(f"DELETE /v7/{resource} is not supported by edgefleet",
                             status=405, code="MethodNotAllowed")
