"""Tables of issue 15: organizations, members, support grants, the audit trail (device notes
are `tables.DeviceNote`, shared with the dashboard)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from edgefleet.server.tables import Base


class Organization(Base):
    """A team owning fleets; every user has a personal one (`personal_of` = that user)."""

    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(sa.String(64), unique=True)
    personal_of: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)


class Member(Base):
    """A user's role in an organization (`fleet_id` None) or on one of its fleets."""

    __tablename__ = "members"
    __table_args__ = (sa.Index("ix_members_user", "user_id", "organization_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        sa.ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    fleet_id: Mapped[int | None] = mapped_column(sa.ForeignKey("fleets.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(sa.String(16))
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)


class SupportGrant(Base):
    """Support access to one fleet (all its devices) or one device, until `expires_ms`."""

    __tablename__ = "support_grants"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        sa.ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    fleet_id: Mapped[int] = mapped_column(sa.ForeignKey("fleets.id", ondelete="CASCADE"),
                                          index=True)
    device_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("devices.id", ondelete="CASCADE"))
    """None: the whole fleet."""
    allow_reboot: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[str] = mapped_column(sa.String(64))
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    expires_ms: Mapped[int] = mapped_column(sa.BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(sa.BigInteger)


class AuditEvent(Base):
    """One change or remote access: who, in which organization, on what, when, how it ended.
    Names are copied (not keys) so records outlive the rows they name."""

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_ts", "ts_ms"),
                      sa.Index("ix_audit_device", "device", "ts_ms"),
                      sa.Index("ix_audit_fleet", "fleet", "ts_ms"),
                      sa.Index("ix_audit_actor", "actor", "ts_ms"))
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    ts_ms: Mapped[int] = mapped_column(sa.BigInteger)
    actor: Mapped[str] = mapped_column(sa.String(64))
    organization: Mapped[str] = mapped_column(sa.String(64), default="")
    action: Mapped[str] = mapped_column(sa.String(64))
    fleet: Mapped[str] = mapped_column(sa.String(128), default="")
    device: Mapped[str] = mapped_column(sa.String(64), default="")
    target: Mapped[str] = mapped_column(sa.String(255), default="")
    outcome: Mapped[str] = mapped_column(sa.String(16))
    """`ok`, `denied` or `failed`."""
    detail: Mapped[str] = mapped_column(sa.Text, default="{}")
    """JSON: confirmation, note, redacted values, reasons."""
