"""config.json: typed fields, unknown fields kept, clear errors, atomic saves, deep redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.model.config import (
    DeviceConfig,
    load_config,
    parse_config,
    redact,
    save_config,
)
from edgefleet.model.errors import InvalidInput

SAMPLE = {
    "apiEndpoint": "https://api.example.test",
    "appUpdatePollInterval": 900000,
    "applicationId": 12,
    "deviceApiKey": "dk-secret",
    "deviceApiKeys": {"api.example.test": "dk-secret-2"},
    "listenPort": 48484,
    "uuid": "abc123",
    "dnsServers": "1.1.1.1, 9.9.9.9",
    "developmentMode": False,
    "os": {"sshKeys": ["ssh-ed25519 AAAA"], "network": {"wifiKey": "wk"}},
    "customThing": {"nested": [1, 2]},
}


def test_fields_are_typed_and_unknown_fields_kept() -> None:
    cfg = parse_config(data=SAMPLE)
    assert cfg.is_managed and cfg.is_production
    assert cfg.poll_interval_s == 900.0
    assert cfg.listen_port == 48484
    assert cfg.dns_server_list == ["1.1.1.1", "9.9.9.9"]
    wire = cfg.to_wire()
    assert wire["customThing"] == {"nested": [1, 2]}
    assert wire["os"]["sshKeys"] == ["ssh-ed25519 AAAA"]
    assert wire["deviceApiKey"] == "dk-secret"


def test_unmanaged_development_device() -> None:
    cfg = parse_config(data={"developmentMode": True})
    assert not cfg.is_managed and not cfg.is_production
    assert parse_config(data={"osVariant": "prod"}).is_production


@pytest.mark.parametrize(("field", "value"), [
    ("applicationId", "twelve"),
    ("deviceType", 3),
    ("developmentMode", "maybe"),
    ("deviceApiKeys", ["x"]),
])
def test_bad_required_field_is_refused_and_named(field: str, value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_config(data={**SAMPLE, field: value})
    assert field in str(err.value)


@pytest.mark.parametrize(("field", "value", "attribute", "default"), [
    ("appUpdatePollInterval", 86_400_001, "app_update_poll_interval", 900_000),
    ("appUpdatePollInterval", "soon", "app_update_poll_interval", 900_000),
    ("listenPort", 70000, "listen_port", 48484),
    ("dnsServers", "127.0.0.1#5399", "dns_servers", None),
    ("localMode", "maybe", "local_mode", False),
    ("balenaRootCA", "bm90IGEgY2VydGlmaWNhdGU=", "balena_root_ca", None),
    ("balenaRootCA", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "balena_root_ca", None),
])
def test_bad_optional_field_uses_the_default_and_says_so(
        field: str, value: object, attribute: str, default: object) -> None:
    """balena's supervisor keeps running over a typo in an optional field; so does edgefleet,
    naming the field (the device logs it; `diagnose checks` fails check_config)."""
    cfg = parse_config(data={**SAMPLE, field: value, "uuid": "abc123"})
    assert getattr(cfg, attribute) == default
    assert [p.path for p in cfg.ignored] == [field] and "using the default" in \
        cfg.ignored[0].reason
    assert cfg.to_wire()[field] == value, "saving keeps what the file said"
    assert cfg.uuid == "abc123" and cfg.is_managed


def test_poll_interval_below_ten_seconds_is_raised_to_it() -> None:
    cfg = parse_config(data={**SAMPLE, "appUpdatePollInterval": 5000})
    assert cfg.app_update_poll_interval == 10_000 and cfg.ignored == []
    assert [p.path for p in cfg.adjusted] == ["appUpdatePollInterval"]
    assert cfg.to_wire()["appUpdatePollInterval"] == 5000


def test_a_write_keeps_a_bad_field_the_file_had_but_refuses_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**SAMPLE, "dnsServers": "127.0.0.1#5399"}))
    cfg = load_config(path=path)
    save_config(path=path, config={**cfg.to_wire(), "uuid": "new"})  # e.g. registration
    assert json.loads(path.read_text())["dnsServers"] == "127.0.0.1#5399"
    with pytest.raises(InvalidInput, match="listenPort"):
        save_config(path=path, config={**cfg.to_wire(), "listenPort": 70000})
    assert json.loads(path.read_text())["uuid"] == "new", "the refused write changed nothing"


def test_load_bad_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"uuid": "x",\n  oops}')
    with pytest.raises(InvalidInput, match="line 2"):
        load_config(path=path)
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_config(data=[1, 2])


def test_save_is_atomic_with_backup(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SAMPLE))
    cfg = load_config(path=path).model_copy(update={"listen_port": 48485})
    save_config(path=path, config=cfg)
    assert json.loads(path.read_text())["listenPort"] == 48485
    assert json.loads((tmp_path / "config.json.backup").read_text()) == SAMPLE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "config.json.backup"]


def test_invalid_save_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SAMPLE))
    before = path.read_bytes()
    with pytest.raises(InvalidInput, match="dns"):
        save_config(path=path, config={**SAMPLE, "dnsServers": "nope"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_redact_at_any_depth() -> None:
    data = {**SAMPLE, "pubnubSubscribeKey": "p1", "mixpanelToken": "m1",
            "provisioningApiKey": "pk", "files": {"network/x": "psk=1"},
            "deep": [{"a": {"apiKey": "k9"}}]}
    out = json.dumps(redact(data=data))
    for secret in ("dk-secret", "dk-secret-2", "wk", "p1", "m1", "pk", "psk=1", "k9"):
        assert f'"{secret}"' not in out
    assert "api.example.test" in out and "abc123" in out
    assert DeviceConfig.model_validate(SAMPLE).device_api_key == "dk-secret"  # input untouched


def test_balena_root_ca_is_read_base64_or_plain() -> None:
    """balena writes balenaRootCA base64-encoded; a plain PEM is taken too; the device trusts
    it beside the standard bundle (device/trust.py)."""
    import base64
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    pem = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
           .public_key(key.public_key()).serial_number(1).not_valid_before(now)
           .not_valid_after(now + datetime.timedelta(days=1))
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    for value in (base64.b64encode(pem.encode()).decode(), pem):
        cfg = parse_config(data={**SAMPLE, "balenaRootCA": value})
        assert cfg.ignored == [] and cfg.root_ca == pem
    assert parse_config(data=SAMPLE).root_ca is None
