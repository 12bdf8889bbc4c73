"""Secrets and who holds them: user tokens, provisioning keys and device API keys.

Only SHA-256 hashes of keys are stored; a key is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.model.timeutil import now_ms
from edgefleet.server import tables as t


def new_key() -> str:
    """A new random secret (32 hex characters, like balena's device keys)."""
    return secrets.token_hex(16)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class UserPrincipal:
    """A user token's holder."""

    user_id: int
    username: str
    is_admin: bool
    is_support: bool = False
    scope: str = "full"
    """`full` or `read` (a read-only token)."""
    expires_ms: int | None = None
    """When the token stops working (None = never)."""

    def expired(self, now: int) -> bool:
        return self.expires_ms is not None and now >= self.expires_ms


@dataclass(frozen=True)
class DevicePrincipal:
    """A device API key's holder: reads and writes only its own device."""

    device_id: int
    uuid: str
    fleet_id: int


@dataclass(frozen=True)
class ProvisioningPrincipal:
    """A provisioning key's holder: may only register devices into its fleet."""

    fleet_id: int


Principal = UserPrincipal | DevicePrincipal | ProvisioningPrincipal


def bearer(header: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header (balena also accepts `ApiKey`)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() not in ("bearer", "apikey") or not value.strip():
        return None
    return value.strip()


_LOOKUP = (
    sa.select(t.ApiKey.kind, t.ApiKey.fleet_id, t.User.id, t.User.username, t.User.is_admin,
              t.Device.id, t.Device.uuid, t.Device.fleet_id, t.User.is_support, t.ApiKey.scope,
              t.ApiKey.expires_ms)
    .select_from(t.ApiKey)
    .outerjoin(t.User, t.User.id == t.ApiKey.user_id)
    .outerjoin(t.Device, t.Device.id == t.ApiKey.device_id)
    .where(t.ApiKey.key_hash == sa.bindparam("h")))


def lookup(s: Session, *, key: str) -> Principal | None:
    """Whoever holds `key`, or None for an unknown key (one query)."""
    row = s.execute(_LOOKUP, {"h": hash_key(key)}).first()
    if row is None:
        return None
    (kind, key_fleet, user_id, username, is_admin, device_id, uuid, device_fleet, is_support,
     scope, expires_ms) = row
    if kind == "user" and user_id is not None:
        principal = UserPrincipal(user_id, username, bool(is_admin), bool(is_support),
                                  scope or "full", expires_ms)
        return None if principal.expired(now_ms()) else principal
    if kind == "device" and device_id is not None:
        return DevicePrincipal(device_id, uuid, device_fleet)
    if kind == "provisioning" and key_fleet is not None:
        return ProvisioningPrincipal(key_fleet)
    return None


def add_key(s: Session, *, kind: str, key: str | None = None, user_id: int | None = None,
            fleet_id: int | None = None, device_id: int | None = None, name: str = "",
            expires_ms: int | None = None, scope: str = "full") -> str:
    """Store a key (made here unless given) and return it in clear, once."""
    key = key or new_key()
    s.add(t.ApiKey(key_hash=hash_key(key), kind=kind, user_id=user_id, fleet_id=fleet_id,
                   device_id=device_id, name=name, created_ms=now_ms(), expires_ms=expires_ms,
                   scope=scope))
    return key


def key_exists(s: Session, *, key: str) -> bool:
    return s.execute(sa.select(t.ApiKey.id).where(
        t.ApiKey.key_hash == hash_key(key))).first() is not None
