"""config.json (the boot partition's device configuration, compat §1): parse, validate, redact.

Writing is atomic with a backup (`save_config`); a bad file or a bad change is refused with the
field named and the file left untouched.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from edgefleet.model.errors import InvalidInput, Problem
from edgefleet.model.secret_names import redact_urls

POLL_MIN_MS = 10_000
POLL_MAX_MS = 86_400_000
SECRET_MARKERS = ("apikey", "mixpanelToken".lower(), "wifikey", "files")
# Fields with a safe default: a bad value there is ignored (the default is used, the device
# says so in its logs and in `diagnose checks`) instead of stopping the device, as balena's
# supervisor keeps running. Every other field (identity, server, production/development) is
# required to be right: a bad value refuses the file.
OPTIONAL_FIELDS = frozenset({
    "appUpdatePollInterval", "listenPort", "dnsServers", "persistentLogging", "localMode",
    "lockOverride", "hostname", "vpnEndpoint", "vpnPort", "deltaEndpoint", "registryEndpoint",
    "balenaRootCA", "lanTunnelPort"})


def root_ca_pem(value: str) -> str:
    """balenaRootCA's PEM: balena writes it base64-encoded; a plain PEM is taken as it is."""
    if "-----BEGIN" in value:
        return value
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("neither PEM nor base64") from None


def is_secret_key(key: str) -> bool:
    """Keys whose values are secrets (compat §1): *apiKey*, pubnub*Key, mixpanelToken, ..."""
    low = key.lower()
    return any(m in low for m in SECRET_MARKERS) or (low.startswith("pubnub") and
                                                      low.endswith("key"))


class DeviceConfig(BaseModel):
    """The fields edgefleet reads from config.json; unknown fields are kept as they are."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    api_endpoint: str | None = Field(default=None, alias="apiEndpoint")
    app_update_poll_interval: int = Field(default=900_000, alias="appUpdatePollInterval")
    application_id: int | None = Field(default=None, alias="applicationId")
    application_name: str | None = Field(default=None, alias="applicationName")
    delta_endpoint: str | None = Field(default=None, alias="deltaEndpoint")
    device_api_key: str | None = Field(default=None, alias="deviceApiKey")
    device_api_keys: dict[str, str] = Field(default_factory=dict, alias="deviceApiKeys")
    device_type: str = Field(default="generic-amd64", alias="deviceType")
    listen_port: int = Field(default=48484, alias="listenPort")
    registry_endpoint: str | None = Field(default=None, alias="registryEndpoint")
    user_id: int | None = Field(default=None, alias="userId")
    username: str | None = None
    vpn_endpoint: str | None = Field(default=None, alias="vpnEndpoint")
    vpn_port: int | None = Field(default=None, alias="vpnPort")
    uuid: str | None = None
    registered_at: int | None = None
    device_id: int | None = Field(default=None, alias="deviceId")
    hostname: str | None = None
    persistent_logging: bool = Field(default=False, alias="persistentLogging")
    local_mode: bool = Field(default=False, alias="localMode")
    development_mode: bool | None = Field(default=None, alias="developmentMode")
    os_variant: str | None = Field(default=None, alias="osVariant")
    lock_override: bool = Field(default=False, alias="lockOverride")
    dns_servers: str | None = Field(default=None, alias="dnsServers")
    balena_root_ca: str | None = Field(default=None, alias="balenaRootCA")
    provisioning_api_key: str | None = Field(default=None, alias="provisioningApiKey")
    lan_tunnel_port: int | None = Field(default=None, alias="lanTunnelPort")
    """edgefleet's own key: listen for tunnel sessions from a gateway device on the LAN on
    this port (`edgefleet ssh --via`); none by default."""
    _ignored: list[Problem] = PrivateAttr(default_factory=list)
    _adjusted: list[Problem] = PrivateAttr(default_factory=list)
    _kept: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def ignored(self) -> list[Problem]:
        """Optional fields whose value was invalid, so their default is used instead."""
        return list(self._ignored)

    @property
    def adjusted(self) -> list[Problem]:
        """Fields used with a corrected value (a poll interval below 10 s is raised to it)."""
        return list(self._adjusted)

    @field_validator("app_update_poll_interval")
    @classmethod
    def _poll(cls, v: int) -> int:
        if not POLL_MIN_MS <= v <= POLL_MAX_MS:
            raise ValueError(f"must be between {POLL_MIN_MS} and {POLL_MAX_MS} ms")
        return v

    @field_validator("listen_port", "lan_tunnel_port")
    @classmethod
    def _port(cls, v: int | None) -> int | None:
        if v is not None and not 0 < v < 65536:
            raise ValueError("must be a TCP port (1-65535)")
        return v

    @field_validator("dns_servers")
    @classmethod
    def _dns(cls, v: str | None) -> str | None:
        if v is None or v.strip() in ("", "null"):
            return v
        for part in v.split(","):
            try:
                ipaddress.ip_address(part.strip())
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not an IP address (comma-separated"
                                 " list of IP addresses expected)") from None
        return v

    @field_validator("balena_root_ca")
    @classmethod
    def _root_ca(cls, v: str | None) -> str | None:
        if v:
            try:
                ssl.create_default_context().load_verify_locations(cadata=root_ca_pem(v))
            except (ssl.SSLError, ValueError) as exc:
                raise ValueError(f"is not a PEM CA certificate, plain or base64-encoded as "
                                 f"balena writes it ({exc}); only the standard CA bundle is "
                                 "trusted meanwhile") from None
        return v

    @property
    def root_ca(self) -> str | None:
        """The extra CA certificate (PEM) the device trusts for its server, if any."""
        return root_ca_pem(self.balena_root_ca) if self.balena_root_ca else None

    @property
    def is_managed(self) -> bool:
        """True when the device talks to a fleet server."""
        return bool(self.api_endpoint)

    @property
    def poll_interval_s(self) -> float:
        return self.app_update_poll_interval / 1000

    @property
    def is_production(self) -> bool:
        """A production-variant device: local mode is refused on it."""
        return self.development_mode is False or self.os_variant == "prod"

    @property
    def dns_server_list(self) -> list[str]:
        if not self.dns_servers or self.dns_servers.strip() == "null":
            return []
        return [p.strip() for p in self.dns_servers.split(",") if p.strip()]

    def to_wire(self) -> dict[str, Any]:
        """The JSON document, with the original key names (and ignored or adjusted fields
        as they were written: saving never loses what the file said)."""
        return {**self.model_dump(mode="json", by_alias=True, exclude_none=True), **self._kept}


def _problems(exc: ValidationError) -> list[Problem]:
    return [Problem(".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()]


def parse_config(*, data: object) -> DeviceConfig:
    """Validate a config.json document. A bad required field refuses it (every problem
    named); a bad optional field (OPTIONAL_FIELDS) is ignored, its default used and the
    problem kept in `.ignored`; an `appUpdatePollInterval` below 10 s becomes 10 s
    (`.adjusted`), as balena sets no minimum."""
    if not isinstance(data, dict):
        raise InvalidInput("config.json", [Problem("", "expected a JSON object")])
    fields = dict(data)
    adjusted: list[Problem] = []
    poll = fields.get("appUpdatePollInterval")
    if isinstance(poll, int) and not isinstance(poll, bool) and 0 <= poll < POLL_MIN_MS:
        adjusted.append(Problem("appUpdatePollInterval", f"{poll} ms is below the minimum;"
                                f" using {POLL_MIN_MS} ms"))
        fields["appUpdatePollInterval"] = POLL_MIN_MS
    try:
        config = DeviceConfig.model_validate(fields)
        ignored: list[Problem] = []
    except ValidationError as exc:
        problems = _problems(exc)
        if any(p.path.split(".")[0] not in OPTIONAL_FIELDS for p in problems):
            raise InvalidInput("config.json", problems) from None
        ignored = [Problem(p.path, f"{p.reason}; using the default") for p in problems]
        for p in problems:
            fields.pop(p.path.split(".")[0], None)
        try:
            config = DeviceConfig.model_validate(fields)
        except ValidationError as again:  # not expected: optional fields all have defaults
            raise InvalidInput("config.json", _problems(again)) from None
    config._ignored, config._adjusted = ignored, adjusted
    config._kept = {key: data[key] for key in {p.path.split(".")[0] for p in ignored + adjusted}
                    if key in data}
    return config


def _refuse_bad_changes(*, target: Path, data: dict[str, Any]) -> None:
    """A write may keep a field the file already had wrong, never bring a bad value in."""
    config = parse_config(data=data)
    try:
        before = json.loads(target.read_text()) if target.exists() else {}
    except (OSError, ValueError):
        before = {}
    before = before if isinstance(before, dict) else {}
    bad = [p for p in config.ignored
           if data.get(p.path.split(".")[0]) != before.get(p.path.split(".")[0])]
    if bad:
        raise InvalidInput("config.json", [Problem(p.path, p.reason.removesuffix(
            "; using the default")) for p in bad])


def load_config(*, path: str | Path) -> DeviceConfig:
    """Read and validate config.json; a clear InvalidInput on bad JSON or bad fields."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidInput("config.json", [Problem(str(path), f"cannot read: {exc}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput("config.json", [Problem(f"line {exc.lineno} column {exc.colno}",
                                                   f"not valid JSON: {exc.msg}")]) from None
    return parse_config(data=data)


def save_config(*, path: str | Path, config: DeviceConfig | dict[str, Any]) -> None:
    """Validate, keep `config.json.backup`, write a temp file, fsync, and replace atomically."""
    data = config.to_wire() if isinstance(config, DeviceConfig) else config
    target = Path(path)
    _refuse_bad_changes(target=target, data=data)
    if target.exists():  # 0600 like config.json itself: both hold the device's key
        backup = target.with_name(target.name + ".backup")
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(target.read_bytes())
    fd, tmp = tempfile.mkstemp(prefix=".config.", dir=target.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def redact(*, data: Any) -> Any:
    """A copy with every secret field replaced, at any depth, and the credentials of every
    URL in a string value (`redact_urls`)."""
    if isinstance(data, dict):
        return {k: ("[REDACTED]" if is_secret_key(str(k)) and v not in (None, "")
                    else redact(data=v)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(data=v) for v in data]
    if isinstance(data, str):  # apiEndpoint, registryEndpoint, ... with user:password@
        return redact_urls(data)
    return data
