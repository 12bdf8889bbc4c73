"""The fleet server's tables (SQLAlchemy 2 declarative models); migrations in `migrations/`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the server's models."""


class User(Base):
    """A person using the user API; owns fleets."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_support: Mapped[bool] = mapped_column(default=False)
    """A support agent: sees what support grants cover (set by an admin)."""
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    password_hash: Mapped[str] = mapped_column(sa.String(255), default="")
    """argon2id hash of the dashboard password ('' = no password: the user cannot sign in)."""


class ApiKey(Base):
    """A secret: a user token, a fleet's provisioning key or a device's API key (hashed)."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    """`user`, `provisioning` or `device`."""
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    fleet_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("fleets.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(255), default="")
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    expires_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    """User tokens: when the token stops working (None = never)."""
    scope: Mapped[str] = mapped_column(sa.String(8), default="full")
    """User tokens: `full` or `read` (read-only)."""


class Fleet(Base):
    """A fleet (balena "application"): devices of one type running one release."""

    __tablename__ = "fleets"
    __table_args__ = (sa.UniqueConstraint("owner_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"),
                                          index=True)
    device_type: Mapped[str] = mapped_column(sa.String(64))
    organization_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    """The organization (`org_tables.Organization`) the fleet belongs to: always set (null
    only in the middle of the migration). No foreign key: SQLite cannot add one to an
    existing table without copying it, and copying `fleets` would cascade-delete devices."""
    target_release_id: Mapped[int | None] = mapped_column(sa.Integer)
    """A release of this fleet, or None = track the latest successful release."""
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)


class Service(Base):
    """A service name of a fleet, with an id that stays the same across releases."""

    __tablename__ = "services"
    __table_args__ = (sa.UniqueConstraint("fleet_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    fleet_id: Mapped[int] = mapped_column(sa.ForeignKey("fleets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(255))


class Release(Base):
    """One push: its compose composition, the v3 release it becomes, and how the build went."""

    __tablename__ = "releases"
    id: Mapped[int] = mapped_column(primary_key=True)
    fleet_id: Mapped[int] = mapped_column(sa.ForeignKey("fleets.id", ondelete="CASCADE"),
                                          index=True)
    commit: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    """`building`, `success` or `failed`."""
    composition: Mapped[str] = mapped_column(sa.Text, default="{}")
    """The compose document (JSON)."""
    target: Mapped[str] = mapped_column(sa.Text, default="{}")
    """The v3 release `{id, services, volumes, networks}` (JSON), set when the build succeeds."""
    error: Mapped[str] = mapped_column(sa.Text, default="")
    build_log: Mapped[str] = mapped_column(sa.Text, default="")
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    finished_ms: Mapped[int | None] = mapped_column(sa.BigInteger)


class ReleaseImage(Base):
    """One service image of a release, as pushed to the registry (its id is the image_id)."""

    __tablename__ = "release_images"
    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"),
                                            index=True)
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id", ondelete="CASCADE"))
    ref: Mapped[str] = mapped_column(sa.String(512))
    digest: Mapped[str] = mapped_column(sa.String(128), default="")
    size: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class Device(Base):
    """A registered device and what it last reported."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    fleet_id: Mapped[int] = mapped_column(sa.ForeignKey("fleets.id", ondelete="CASCADE"),
                                          index=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    device_type: Mapped[str] = mapped_column(sa.String(64))
    pinned_release_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("releases.id", ondelete="SET NULL"))
    running_release_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("releases.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(sa.String(64), default="")
    """What the supervisor reported (`Idle`, `Downloading`, ...)."""
    os_version: Mapped[str] = mapped_column(sa.String(255), default="")
    os_variant: Mapped[str] = mapped_column(sa.String(64), default="")
    supervisor_version: Mapped[str] = mapped_column(sa.String(64), default="")
    mac_address: Mapped[str] = mapped_column(sa.String(255), default="")
    ip_address: Mapped[str] = mapped_column(sa.String(255), default="")
    reported: Mapped[str] = mapped_column(sa.Text, default="{}")
    """Every other reported field (metrics, api_port, ...), merged report by report (JSON)."""
    vpn_connected: Mapped[bool] = mapped_column(default=False)
    """The tunnel signal of compat §4: a server process holds this device's tunnel."""
    tunnel_host: Mapped[str] = mapped_column(sa.String(255), default="")
    """The URL of the server process holding the device's tunnel ("" = none)."""
    last_seen_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_report_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)


class DeviceRelease(Base):
    """A device's update status for one release (from its state reports)."""

    __tablename__ = "device_releases"
    device_id: Mapped[int] = mapped_column(sa.ForeignKey("devices.id", ondelete="CASCADE"),
                                           primary_key=True)
    commit: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    app_uuid: Mapped[str] = mapped_column(sa.String(64), default="")
    update_status: Mapped[str] = mapped_column(sa.String(32), default="")
    services: Mapped[str] = mapped_column(sa.Text, default="{}")
    updated_ms: Mapped[int] = mapped_column(sa.BigInteger)


class Variable(Base):
    """An environment or configuration variable at fleet / fleet+service / device /
    device+service level (service '' = every service)."""

    __tablename__ = "variables"
    __table_args__ = (sa.Index("ix_variables_scope", "fleet_id", "device_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    """`env` or `config`."""
    fleet_id: Mapped[int] = mapped_column(sa.ForeignKey("fleets.id", ondelete="CASCADE"))
    device_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="CASCADE"))
    service: Mapped[str] = mapped_column(sa.String(255), default="")
    name: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[str] = mapped_column(sa.Text)


class DeviceLog(Base):
    """One log line a device sent (retention: newest N lines per device, M days)."""

    __tablename__ = "device_logs"
    __table_args__ = (sa.Index("ix_device_logs_device", "device_id", "id"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    device_id: Mapped[int] = mapped_column(sa.ForeignKey("devices.id", ondelete="CASCADE"))
    ts_ms: Mapped[int] = mapped_column(sa.BigInteger)
    service_id: Mapped[int | None]
    is_system: Mapped[bool] = mapped_column(default=False)
    is_stderr: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str] = mapped_column(sa.Text)


class Meta(Base):
    """Server-wide counters; `generation` grows on every change that can alter a target."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger)


class WebSession(Base):
    """A dashboard sign-in: the cookie's token (hashed), its CSRF token, and its expiry."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    csrf: Mapped[str] = mapped_column(sa.String(64))
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    expires_ms: Mapped[int] = mapped_column(sa.BigInteger)


class DeviceNote(Base):
    """A line of a device's running notes (what was done and found), by whom and when."""

    __tablename__ = "device_notes"
    __table_args__ = (sa.Index("ix_device_notes_device", "device_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(sa.ForeignKey("devices.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(sa.String(64))
    text: Mapped[str] = mapped_column(sa.Text)
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)


class SshKey(Base):
    """A user's SSH public key, for the SSH front door."""

    __tablename__ = "ssh_keys"
    __table_args__ = (sa.UniqueConstraint("user_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    public_key: Mapped[str] = mapped_column(sa.Text)
    """`type base64` (OpenSSH format, without the comment)."""
    fingerprint: Mapped[str] = mapped_column(sa.String(128), unique=True)
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)


class DeviceDiagnostics(Base):
    """One remote diagnostics run, kept so it can be read when the device is gone."""

    __tablename__ = "device_diagnostics"
    __table_args__ = (sa.Index("ix_device_diagnostics_device", "device_uuid", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    device_uuid: Mapped[str] = mapped_column(sa.String(64))
    username: Mapped[str] = mapped_column(sa.String(64))
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    checks: Mapped[str] = mapped_column(sa.Text, default="")
    """The answer of /v2/diagnostics/checks (JSON) or the error getting it."""
    report: Mapped[str] = mapped_column(sa.Text, default="")
    state: Mapped[str] = mapped_column(sa.Text, default="")
    """Target vs current state, from the supervisor API (JSON)."""


class DeviceTag(Base):
    """A tag (key → value) on a device, as balena's `device_tag` (`balena tag set`)."""

    __tablename__ = "device_tags"
    __table_args__ = (sa.UniqueConstraint("device_id", "tag_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(sa.ForeignKey("devices.id", ondelete="CASCADE"))
    tag_key: Mapped[str] = mapped_column(sa.String(100))
    value: Mapped[str] = mapped_column(sa.Text, default="")


class FleetTag(Base):
    """A tag on a fleet, as balena's `application_tag`."""

    __tablename__ = "fleet_tags"
    __table_args__ = (sa.UniqueConstraint("fleet_id", "tag_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    fleet_id: Mapped[int] = mapped_column(sa.ForeignKey("fleets.id", ondelete="CASCADE"))
    tag_key: Mapped[str] = mapped_column(sa.String(100))
    value: Mapped[str] = mapped_column(sa.Text, default="")


class ReleaseTag(Base):
    """A tag on a release, as balena's `release_tag`."""

    __tablename__ = "release_tags"
    __table_args__ = (sa.UniqueConstraint("release_id", "tag_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"))
    tag_key: Mapped[str] = mapped_column(sa.String(100))
    value: Mapped[str] = mapped_column(sa.Text, default="")
