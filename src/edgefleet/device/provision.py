"""Registration (compat §4): a device with a provisioning config.json makes its own uuid and
device key, registers with the fleet's provisioning key, then writes uuid and key to config.json
atomically and drops the provisioning key, as balena does. Safe to repeat after a crash."""

from __future__ import annotations

import json
import secrets
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.device.cloud import CloudClient, CloudError, DuplicateDevice, RegistrationRefused
from edgefleet.device.store import Store
from edgefleet.model.config import DeviceConfig, load_config, save_config
from edgefleet.model.timeutil import now_ms

UUID_KEY = "uuid"
"""Store key of a uuid made before config.json has one (shared with `runtime.device_uuid`)."""
PENDING_KEY = "pendingDeviceApiKey"
"""Store key of the device key made for a registration that is not finished yet."""


@dataclass(frozen=True)
class Identity:
    """This device's uuid and device API key."""

    uuid: str
    api_key: str


def is_registered(*, config: DeviceConfig) -> bool:
    """config.json already holds a device key for a uuid."""
    return bool(config.uuid and config.device_api_key)


def pending_identity(*, config: DeviceConfig, store: Store) -> Identity:
    """The uuid and key to register with: made once, kept in the store until config.json has
    them, so a retry after a crash uses the same ones."""
    uuid = config.uuid or store.get_config(key=UUID_KEY)
    if not uuid:
        uuid = uuidlib.uuid4().hex
        store.set_config(key=UUID_KEY, value=uuid)
    key = config.device_api_key or store.get_config(key=PENDING_KEY)
    if not key:
        key = secrets.token_hex(16)
        store.set_config(key=PENDING_KEY, value=key)
    return Identity(uuid=uuid, api_key=key)


def registration_body(*, config: DeviceConfig, identity: Identity,
                      info: dict[str, Any]) -> dict[str, Any]:
    """The POST /device/register body."""
    body: dict[str, Any] = {"uuid": identity.uuid, "api_key": identity.api_key,
                            "device_type": config.device_type,
                            "supervisor_version": info.get("supervisor_version", ""),
                            "os_version": info.get("os_version", ""),
                            "os_variant": config.os_variant or "dev",
                            "mac_address": info.get("mac_address", "")}
    if config.application_id is not None:
        body["application"] = config.application_id
    return body


async def ensure_registered(*, config_path: Path, client: CloudClient, store: Store,
                            info: dict[str, Any]) -> DeviceConfig:
    """Register if config.json has no device key yet; return the (updated) config.

    A refused registration (bad provisioning key, unknown fleet) raises RegistrationRefused and
    leaves config.json untouched; a network failure raises CloudError (retry later)."""
    config = load_config(path=config_path)
    if is_registered(config=config):
        return config
    if not config.provisioning_api_key:
        raise RegistrationRefused(
            f"{config_path} has apiEndpoint but neither deviceApiKey nor provisioningApiKey;"
            " write a provisioning config.json with `edgefleet device config <fleet>`")
    identity = pending_identity(config=config, store=store)
    body = registration_body(config=config, identity=identity, info=info)
    device_id: int | None = None
    api_key = identity.api_key
    try:
        registered = await client.register(provisioning_key=config.provisioning_api_key,
                                           body=body)
        device_id, api_key = registered.id, registered.api_key or api_key
    except DuplicateDevice:
        # An earlier attempt got through but crashed before config.json was written: the
        # server knows this uuid; our key proves it is ours.
        try:
            await client.get_target(uuid=identity.uuid, api_key=api_key, etag=None)
        except CloudError as exc:
            if exc.status in (401, 403, 404):
                raise RegistrationRefused(
                    f"uuid {identity.uuid} is registered already and does not accept this"
                    f" device's key (HTTP {exc.status}); remove the uuid from config.json or"
                    " the device from the fleet", status=409) from None
            raise
    config = write_registration(config_path=config_path,
                                identity=Identity(uuid=identity.uuid, api_key=api_key),
                                device_id=device_id)
    store.set_config(key=PENDING_KEY, value="")
    return config


def write_registration(*, config_path: Path, identity: Identity, device_id: int | None
                       ) -> DeviceConfig:
    """Store uuid, device key and registration time in config.json (atomically, with a
    backup) and drop the provisioning key; every other field is kept as it was."""
    raw = json.loads(config_path.read_text())
    raw.update({"uuid": identity.uuid, "deviceApiKey": identity.api_key,
                "registered_at": now_ms()})
    if device_id is not None:
        raw["deviceId"] = device_id
    raw.pop("provisioningApiKey", None)
    save_config(path=config_path, config=raw)
    return load_config(path=config_path)
