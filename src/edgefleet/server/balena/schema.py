"""The balena resources as views of edgefleet's own tables: each resource is a SELECT whose
columns carry the OData field names, plus `_owner` (the organization whose members may see
the row). No second data model: everything here is a query over `server/tables.py`.

Organizations and memberships are edgefleet's own (`org_tables`); membership roles map to
balena's ids (1 administrator = owner, 2 member = the others)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, aliased

from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.balena import resources_more
from edgefleet.server.balena.resource import INSTALL_FACTOR, Nav, Resource, View
from edgefleet.server.balena.resource import many as _m
from edgefleet.server.balena.resource import one as _o
from edgefleet.server.devicetypes import DEVICE_TYPES

SERVICE_INSTALL_FACTOR = INSTALL_FACTOR
DT_IDS = {slug: i + 1 for i, slug in enumerate(sorted(DEVICE_TYPES))}
ARCH_IDS = {arch: i + 1 for i, arch in enumerate(sorted(set(DEVICE_TYPES.values())))}


def _dt_case(column: sa.ColumnElement[str] | InstrumentedAttribute[str]) -> sa.ColumnElement[int]:
    return sa.case(DT_IDS, value=column, else_=None)


def fleet_slug() -> sa.ColumnElement[str]:
    """balena's `<organization handle>/<fleet name>` (needs the organizations join)."""
    return sa.func.lower(o.Organization.handle + "/" + t.Fleet.name)


def _latest_release(fleet_id: InstrumentedAttribute[int]) -> sa.ScalarSelect[int]:
    return (sa.select(sa.func.max(t.Release.id))
            .where(t.Release.fleet_id == fleet_id, t.Release.status == "success")
            .scalar_subquery())


def _application() -> View:
    return sa.select(
        t.Fleet.id.label("id"), t.Fleet.name.label("app_name"), fleet_slug().label("slug"),
        t.Fleet.uuid.label("uuid"), _dt_case(t.Fleet.device_type).label("is_for__device_type"),
        t.Fleet.organization_id.label("organization"),
        t.Fleet.target_release_id.is_(None).label("should_track_latest_release"),
        sa.func.coalesce(t.Fleet.target_release_id, _latest_release(t.Fleet.id))
        .label("should_be_running__release"),
        sa.false().label("is_host"), sa.false().label("is_archived"),
        sa.false().label("is_public"), sa.false().label("is_discoverable"),
        sa.literal("fleet").label("is_of__class"), t.Fleet.created_ms.label("created_at"),
        sa.literal(1).label("application_type"),
        t.Fleet.organization_id.label("_owner"),
    ).join(o.Organization, o.Organization.id == t.Fleet.organization_id)


def _latest_note() -> sa.ColumnElement[str]:
    """The device's newest note (`balena device note`, `edgefleet device note`), or ""."""
    newest = (sa.select(t.DeviceNote.text).where(t.DeviceNote.device_id == t.Device.id)
              .order_by(t.DeviceNote.id.desc()).limit(1).correlate(t.Device).scalar_subquery())
    return sa.func.coalesce(newest, "")


def _device() -> View:
    return sa.select(
        t.Device.id.label("id"), t.Device.uuid.label("uuid"),
        t.Device.name.label("device_name"), t.Device.fleet_id.label("belongs_to__application"),
        _dt_case(t.Device.device_type).label("is_of__device_type"),
        t.Device.running_release_id.label("is_running__release"),
        t.Device.pinned_release_id.label("is_pinned_on__release"),
        t.Device.os_version.label("os_version"), t.Device.os_variant.label("os_variant"),
        t.Device.supervisor_version.label("supervisor_version"),
        t.Device.ip_address.label("ip_address"), t.Device.mac_address.label("mac_address"),
        t.Device.status.label("provisioning_state"),
        t.Device.vpn_connected.label("is_connected_to_vpn"),
        t.Device.created_ms.label("created_at"), sa.true().label("is_active"),
        sa.false().label("is_web_accessible"), _latest_note().label("note"),
        sa.literal("").label("location"), sa.literal("").label("public_address"),
        t.Device.last_seen_ms.label("_last_seen"), t.Device.fleet_id.label("_fleet"),
        t.Device.reported.label("_reported"), t.Fleet.organization_id.label("_owner"),
    ).join(t.Fleet, t.Fleet.id == t.Device.fleet_id)


_RELEASE_STATUS = sa.case({"building": "running"}, value=t.Release.status,
                          else_=t.Release.status)


def _release() -> View:
    return sa.select(
        t.Release.id.label("id"), t.Release.commit.label("commit"),
        _RELEASE_STATUS.label("status"), t.Release.fleet_id.label("belongs_to__application"),
        t.Release.created_ms.label("created_at"), t.Release.created_ms.label("start_timestamp"),
        t.Release.finished_ms.label("end_timestamp"),
        t.Release.composition.label("composition"), t.Release.build_log.label("build_log"),
        sa.literal("cloud").label("source"), sa.true().label("is_final"),
        sa.false().label("is_invalidated"), sa.true().label("is_passing_tests"),
        sa.literal("final").label("release_type"), sa.literal("0.0.0").label("semver"),
        sa.literal("0.0.0").label("raw_version"), t.Fleet.owner_id.label("is_created_by__user"),
        t.Fleet.organization_id.label("_owner"),
    ).join(t.Fleet, t.Fleet.id == t.Release.fleet_id)


def _image() -> View:
    return sa.select(
        t.ReleaseImage.id.label("id"), t.ReleaseImage.service_id.label("is_a_build_of__service"),
        t.ReleaseImage.ref.label("is_stored_at__image_location"),
        t.ReleaseImage.digest.label("content_hash"), t.ReleaseImage.size.label("image_size"),
        sa.literal("success").label("status"), sa.literal("").label("build_log"),
        sa.literal("Dockerfile").label("project_type"),
        t.Release.created_ms.label("created_at"), t.Release.finished_ms.label("push_timestamp"),
        t.Fleet.organization_id.label("_owner"),
    ).join(t.Release, t.Release.id == t.ReleaseImage.release_id).join(
        t.Fleet, t.Fleet.id == t.Release.fleet_id)


def _image_release() -> View:
    return sa.select(
        t.ReleaseImage.id.label("id"), t.ReleaseImage.id.label("image"),
        t.ReleaseImage.release_id.label("is_part_of__release"),
        t.Fleet.organization_id.label("_owner"),
    ).join(t.Release, t.Release.id == t.ReleaseImage.release_id).join(
        t.Fleet, t.Fleet.id == t.Release.fleet_id)


def _service() -> View:
    return sa.select(
        t.Service.id.label("id"), t.Service.name.label("service_name"),
        t.Service.fleet_id.label("application"), t.Fleet.created_ms.label("created_at"),
        t.Fleet.organization_id.label("_owner"),
    ).join(t.Fleet, t.Fleet.id == t.Service.fleet_id)


def _service_install() -> View:
    return sa.select(
        (t.Device.id * SERVICE_INSTALL_FACTOR + t.Service.id).label("id"),
        t.Device.id.label("device"), t.Service.id.label("installs__service"),
        t.Device.created_ms.label("created_at"), t.Fleet.organization_id.label("_owner"),
    ).join(t.Service, t.Service.fleet_id == t.Device.fleet_id).join(
        t.Fleet, t.Fleet.id == t.Device.fleet_id)


def _variables(*, kind: str, device: bool, service: bool) -> Callable[
        [], View]:
    def build() -> View:
        v = t.Variable
        cols: list[sa.ColumnElement[Any]] = [v.id.label("id")]
        if service:
            svc = aliased(t.Service)
            if device:
                cols.append((v.device_id * SERVICE_INSTALL_FACTOR + svc.id)
                            .label("service_install"))
            else:
                cols.append(svc.id.label("service"))
        elif device:
            cols.append(v.device_id.label("device"))
        else:
            cols.append(v.fleet_id.label("application"))
        cols += [v.name.label("name"), v.value.label("value"),
                 t.Fleet.organization_id.label("_owner")]
        q = sa.select(*cols).select_from(v).join(t.Fleet, t.Fleet.id == v.fleet_id)
        if service:
            q = q.join(svc, sa.and_(svc.fleet_id == v.fleet_id, svc.name == v.service))
        else:
            q = q.where(v.service == "")
        return q.where(v.kind == kind,
                       v.device_id.is_not(None) if device else v.device_id.is_(None))
    return build


def _organization() -> View:
    return sa.select(o.Organization.id.label("id"), o.Organization.handle.label("name"),
                     o.Organization.handle.label("handle"), sa.false().label("is_frozen"),
                     o.Organization.created_ms.label("created_at"),
                     o.Organization.id.label("_owner"))


def _membership() -> View:
    return sa.select(o.Member.id.label("id"), o.Member.user_id.label("user"),
                     o.Member.organization_id.label("is_member_of__organization"),
                     sa.case((o.Member.role == "owner", 1), else_=2)
                     .label("organization_membership_role"),
                     o.Member.created_ms.label("created_at"),
                     o.Member.organization_id.label("_owner")
                     ).where(o.Member.fleet_id.is_(None))


def _user() -> View:
    """A user is visible to itself (through its personal organization)."""
    return sa.select(t.User.id.label("id"), t.User.username.label("username"),
                     sa.null().label("email"), t.User.created_ms.label("created_at"),
                     t.User.id.label("actor"), o.Organization.id.label("_owner")
                     ).join(o.Organization, o.Organization.personal_of == t.User.id)


def _constant(names: tuple[str, ...], rows: list[tuple[object, ...]]
              ) -> View:
    """Rows known to the code (device types, architectures) as a SELECT (UNION ALL of
    literals: SQLite has no column names for VALUES)."""
    union = sa.union_all(*(sa.select(*(sa.literal(v).label(n) for n, v in zip(names, row,
                                                                             strict=True)))
                           for row in rows)).subquery()
    return sa.select(*(union.c[n] for n in names), sa.null().label("_owner"))


def _device_type() -> View:
    return _constant(("id", "slug", "name", "is_of__cpu_architecture"),
                     [(DT_IDS[s], s, s, ARCH_IDS[a]) for s, a in sorted(DEVICE_TYPES.items())])


def _alias() -> View:
    return _constant(("id", "is_referenced_by__alias", "device_type"),
                     [(DT_IDS[s], s, DT_IDS[s]) for s in sorted(DEVICE_TYPES)])


def _arch() -> View:
    return _constant(("id", "slug"), [(i, a) for a, i in sorted(ARCH_IDS.items())])


def _application_type() -> View:
    return _constant(("id", "slug", "name", "supports_multicontainer", "is_legacy"),
                     [(1, "microservices", "Microservices", True, False)])


def _var(name: str, parent: str, kind: str, device: bool, service: bool) -> Resource:
    return Resource(name, _variables(kind=kind, device=device, service=service),
                    navs={parent: Nav(parent, parent, "id", False)}, fks=frozenset({parent}))


_VARS = [
    _var("application_environment_variable", "application", "env", False, False),
    _var("application_config_variable", "application", "config", False, False),
    _var("service_environment_variable", "service", "env", False, True),
    _var("device_environment_variable", "device", "env", True, False),
    _var("device_config_variable", "device", "config", True, False),
    _var("device_service_environment_variable", "service_install", "env", True, True),
]
DATE = frozenset({"created_at"})
RESOURCES: dict[str, Resource] = {r.name: r for r in [
    Resource("application", _application, navs={
        "owns__device": _m("device", "belongs_to__application"),
        "owns__release": _m("release", "belongs_to__application"),
        "service": _m("service", "application"),
        "application_environment_variable": _m("application_environment_variable",
                                               "application"),
        "application_config_variable": _m("application_config_variable", "application"),
        "is_for__device_type": _o("device_type", "is_for__device_type"),
        "organization": _o("organization", "organization"),
        "should_be_running__release": _o("release", "should_be_running__release"),
        # the fleets of the organizations the user is a member of: the user may see the
        # fleet's organization (never a user id compared with an organization id)
        "is_directly_accessible_by__user": _o("organization", "organization"),
        "application_type": _o("application_type", "application_type"),
        "application_tag": _m("application_tag", "application"),
    }, fks=frozenset({"is_for__device_type", "organization", "should_be_running__release",
                      "application_type"}),
        dates=DATE, bools=frozenset({"should_track_latest_release", "is_host", "is_archived",
                                     "is_public", "is_discoverable"})),
    Resource("device", _device, navs={
        "belongs_to__application": _o("application", "belongs_to__application"),
        "is_of__device_type": _o("device_type", "is_of__device_type"),
        "is_running__release": _o("release", "is_running__release"),
        "is_pinned_on__release": _o("release", "is_pinned_on__release"),
        "device_tag": _m("device_tag", "device"),
        "device_environment_variable": _m("device_environment_variable", "device"),
        "device_config_variable": _m("device_config_variable", "device"),
        "service_install": _m("service_install", "device"),
        "image_install": _m("image_install", "device"),
    }, fks=frozenset({"belongs_to__application", "is_of__device_type", "is_running__release",
                      "is_pinned_on__release"}),
        dates=DATE, bools=frozenset({"is_connected_to_vpn", "is_active", "is_web_accessible"}),
        computed=frozenset({"status", "overall_status", "is_online", "api_heartbeat_state",
                            "last_connectivity_event"})),
    Resource("release", _release, navs={
        "belongs_to__application": _o("application", "belongs_to__application"),
        "release_image": _m("image__is_part_of__release", "is_part_of__release"),
        "contains__image": _m("image__is_part_of__release", "is_part_of__release"),
        "is_created_by__user": _o("user", "is_created_by__user"),
        "release_tag": _m("release_tag", "release"),
    }, fks=frozenset({"belongs_to__application", "is_created_by__user"}),
        dates=frozenset({"created_at", "start_timestamp", "end_timestamp"}),
        bools=frozenset({"is_final", "is_invalidated", "is_passing_tests"}),
        json_fields=frozenset({"composition"})),
    Resource("image", _image, navs={
        "is_a_build_of__service": _o("service", "is_a_build_of__service"),
        "is_part_of__release": _m("image__is_part_of__release", "image"),
        "release_image": _m("image__is_part_of__release", "image"),
    }, fks=frozenset({"is_a_build_of__service"}),
        dates=frozenset({"created_at", "push_timestamp"})),
    Resource("image__is_part_of__release", _image_release, navs={
        "image": _o("image", "image"), "is_part_of__release": _o("release", "is_part_of__release"),
    }, fks=frozenset({"image", "is_part_of__release"})),
    Resource("service", _service, navs={
        "application": _o("application", "application"),
        "is_built_by__image": _m("image", "is_a_build_of__service"),
        "service_environment_variable": _m("service_environment_variable", "service"),
        "service_install": _m("service_install", "installs__service"),
    }, fks=frozenset({"application"}), dates=DATE),
    Resource("service_install", _service_install, navs={
        "device": _o("device", "device"), "installs__service": _o("service", "installs__service"),
        "service": _o("service", "installs__service"),
        "device_service_environment_variable": _m("device_service_environment_variable",
                                                  "service_install"),
    }, fks=frozenset({"device", "installs__service"}), dates=DATE),
    *_VARS,
    Resource("organization", _organization, navs={
        "application": _m("application", "organization"),
        "organization_membership": _m("organization_membership", "is_member_of__organization"),
    }, dates=DATE, bools=frozenset({"is_frozen"})),
    Resource("organization_membership", _membership, navs={
        "user": _o("user", "user"),
        "is_member_of__organization": _o("organization", "is_member_of__organization"),
    }, fks=frozenset({"user", "is_member_of__organization", "organization_membership_role"}),
        dates=DATE),
    Resource("user", _user, navs={
        "organization_membership": _m("organization_membership", "user"),
    }, dates=DATE, fks=frozenset({"actor"})),
    Resource("device_type", _device_type, navs={
        "is_of__cpu_architecture": _o("cpu_architecture", "is_of__cpu_architecture"),
        "device_type_alias": _m("device_type_alias", "device_type"),
        "is_default_for__application": _m("application", "is_for__device_type"),
    }, fks=frozenset({"is_of__cpu_architecture"}), public=True),
    Resource("device_type_alias", _alias, navs={"device_type": _o("device_type", "device_type")},
             fks=frozenset({"device_type"}), public=True),
    Resource("cpu_architecture", _arch, public=True),
    Resource("application_type", _application_type, public=True,
             bools=frozenset({"supports_multicontainer", "is_legacy"})),
]}
RESOURCES.update(resources_more.RESOURCES)
