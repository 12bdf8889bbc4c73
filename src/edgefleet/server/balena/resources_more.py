"""balena resources beyond fleets, devices and releases: what a device has installed
(`image_install`, for `balena device restart --service`), the user's SSH keys
(`user__has__public_key`, for `balena ssh-key`), tags on devices, fleets and releases
(`balena tag set|rm`, `balena tags`), and the user's API tokens (`api_key`, for `balena
api-key list|revoke`)."""

from __future__ import annotations

import sqlalchemy as sa

from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.balena.resource import INSTALL_FACTOR, Resource, View, one


def _image_install() -> View:
    """The images of the release a device runs, one row each (id `device id * FACTOR +
    image id`); its image id is the `imageId` the device's supervisor knows the service by."""
    return sa.select(
        (t.Device.id * INSTALL_FACTOR + t.ReleaseImage.id).label("id"),
        t.Device.id.label("device"), t.ReleaseImage.id.label("installs__image"),
        t.ReleaseImage.release_id.label("is_provided_by__release"),
        sa.literal("Running").label("status"), sa.null().label("download_progress"),
        sa.func.coalesce(t.Release.finished_ms, t.Release.created_ms).label("install_date"),
        t.Release.created_ms.label("created_at"), t.Fleet.organization_id.label("_owner"),
    ).select_from(t.Device).join(
        t.ReleaseImage, t.ReleaseImage.release_id == t.Device.running_release_id).join(
        t.Release, t.Release.id == t.ReleaseImage.release_id).join(
        t.Fleet, t.Fleet.id == t.Device.fleet_id)


def _public_key() -> View:
    """A user's SSH keys (edgefleet's own, for the SSH front door), seen by that user only
    (their personal organization owns the row)."""
    return sa.select(
        t.SshKey.id.label("id"), t.SshKey.user_id.label("user"), t.SshKey.name.label("title"),
        t.SshKey.public_key.label("public_key"), t.SshKey.fingerprint.label("fingerprint"),
        t.SshKey.created_ms.label("created_at"), o.Organization.id.label("_owner"),
    ).join(o.Organization, o.Organization.personal_of == t.SshKey.user_id)


def _api_key() -> View:
    """A user's API tokens (those of `edgefleet token list`; never the secret, which only
    its hash is kept of), seen by that user only; the actor is the user (as `whoami` says)."""
    return sa.select(
        t.ApiKey.id.label("id"), sa.func.nullif(t.ApiKey.name, "").label("name"),
        sa.null().label("description"), t.ApiKey.created_ms.label("created_at"),
        t.ApiKey.expires_ms.label("expiry_date"), t.ApiKey.user_id.label("is_of__actor"),
        o.Organization.id.label("_owner"),
    ).join(o.Organization, o.Organization.personal_of == t.ApiKey.user_id).where(
        t.ApiKey.kind == "user")


def _device_tags() -> View:
    tag = t.DeviceTag
    return sa.select(tag.id.label("id"), tag.device_id.label("device"),
                     tag.tag_key.label("tag_key"), tag.value.label("value"),
                     t.Fleet.organization_id.label("_owner")).join(
        t.Device, t.Device.id == tag.device_id).join(t.Fleet, t.Fleet.id == t.Device.fleet_id)


def _fleet_tags() -> View:
    tag = t.FleetTag
    return sa.select(tag.id.label("id"), tag.fleet_id.label("application"),
                     tag.tag_key.label("tag_key"), tag.value.label("value"),
                     t.Fleet.organization_id.label("_owner")).join(
        t.Fleet, t.Fleet.id == tag.fleet_id)


def _release_tags() -> View:
    tag = t.ReleaseTag
    return sa.select(tag.id.label("id"), tag.release_id.label("release"),
                     tag.tag_key.label("tag_key"), tag.value.label("value"),
                     t.Fleet.organization_id.label("_owner")).join(
        t.Release, t.Release.id == tag.release_id).join(
        t.Fleet, t.Fleet.id == t.Release.fleet_id)


RESOURCES: dict[str, Resource] = {r.name: r for r in [
    Resource("image_install", _image_install, navs={
        "device": one("device", "device"),
        "installs__image": one("image", "installs__image"),
        "image": one("image", "installs__image"),
        "is_provided_by__release": one("release", "is_provided_by__release"),
    }, fks=frozenset({"device", "installs__image", "is_provided_by__release"}),
        dates=frozenset({"install_date", "created_at"})),
    Resource("api_key", _api_key, fks=frozenset({"is_of__actor"}),
             dates=frozenset({"created_at", "expiry_date"})),
    Resource("user__has__public_key", _public_key, navs={"user": one("user", "user")},
             fks=frozenset({"user"}), dates=frozenset({"created_at"})),
    *(Resource(f"{parent}_tag", view, navs={parent: one(parent, parent)},
               fks=frozenset({parent})) for parent, view in (
        ("device", _device_tags), ("application", _fleet_tags), ("release", _release_tags))),
]}
