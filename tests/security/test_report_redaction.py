"""Issue 11, finding 5: the diagnostics report leaked secrets (values cut at the first space or
comma, URL credentials, password=/--password/--token=, Bearer tokens, JSON "password", PEM
bodies, API_KEY_2) and broke the JSON of its config section. One function redacts, checked
here on a table of cases and on a real report built from planted secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.diagnose.redact import REDACTED, redact_text
from edgefleet.diagnose.report import Command, build_report

R = REDACTED
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQDQ3y5Y7uIsecret"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"

# (text, what must be gone, what must stay)
CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("BALENA_API_KEY=abc def, ghi", ("abc", "def", "ghi"), ("BALENA_API_KEY=",)),
    ("API_KEY_2=second-key-value", ("second-key-value",), ("API_KEY_2=",)),
    ("export DB_PASSWORD='hunter two, three'", ("hunter", "two", "three"), ("DB_PASSWORD='",)),
    ('password="quoted value, with comma"', ("quoted", "comma"), ('password="',)),
    ("login password=s3cr3t-pw user=bob", ("s3cr3t-pw",), ("login password=",)),
    ("mysql --password hunter22 --user bob", ("hunter22",), ("--user bob",)),
    ("agent --token=tok-123456 --verbose", ("tok-123456",), ("agent --token=",)),
    ("agent --api-key 'k e y 1'", ("k e y 1",), ("agent --api-key '",)),
    ("curl -H 'Authorization: Bearer eyJhbGciOi.payload.sig'", ("eyJhbGciOi",), ("curl -H",)),
    ("GET / bearer abcdefgh12345", ("abcdefgh12345",), ("GET /",)),
    ("api: https://user:pa55w0rd@api.example.com/v6", ("pa55w0rd", "user:"),
     ("api.example.com/v6",)),
    ('"apiEndpoint": "https://admin:topsecret@fleet.example.com"', ("topsecret",),
     ("fleet.example.com",)),
    ("proxy postgresql://edge:dbpass123@127.0.0.1:5432/db", ("dbpass123",), ("127.0.0.1",)),
    ('{"password": "json secret, with space", "user": "bob"}', ("json secret",),
     ('"user": "bob"',)),
    ('{"token": 123456789, "n": 1}', ("123456789",), ('"n": 1',)),
    ('{"Env": ["API_KEY=abc def, ghi", "OTHER=1"]}', ("abc def",), ('"OTHER=1"',)),
    ('{"Env": ["SECRET_TOKEN=", "OTHER=1"]}', (), ('"OTHER=1"',)),
    (f"key file:\n{PEM}\nafter", tuple(PEM_BODY.split("\n")), ("after", "BEGIN RSA")),
    ('{"k": ' + json.dumps(PEM) + "}", ("MIIEvQ",), ("END RSA PRIVATE KEY",)),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n(truncated)",
     ("b3BlbnNzaC1rZXktdjE",), ("(truncated)",)),
    ("{'password': 'py repr', 'x': 1}", ("py repr",), ("'x': 1",)),
    ("psk: wifi passphrase 99", ("wifi passphrase 99",), ("psk:",)),
    ("deviceApiKey: abcdef0123456789", ("abcdef0123456789",), ()),
    ("kernel.keys.maxkeys = 200\nnet.core.somaxconn = 4096", (), ("200", "4096")),
    ("Tests PASSED: 12, passing: yes; monkey=banana", (), ("12", "yes", "banana")),
]


@pytest.mark.parametrize(("text", "gone", "kept"), CASES, ids=[c[0][:30] for c in CASES])
def test_redact_text_table(text: str, gone: tuple[str, ...], kept: tuple[str, ...]) -> None:
    out = redact_text(text)
    for secret in gone:
        assert secret not in out, f"{secret!r} left in {out!r}"
    for part in kept:
        assert part in out, f"{part!r} lost from {out!r}"
    if gone:
        assert R in out
    if text.lstrip().startswith("{") and '"' in text:
        json.loads(out)  # JSON stays JSON


def test_known_values_are_removed_raw_and_json_escaped() -> None:
    secret = 'pa"ss\\word-xyz'
    text = f"plain {secret} json {json.dumps({'v': secret})}"
    out = redact_text(text, secrets=[secret])
    assert "ss\\word" not in out and "word-xyz" not in out
    assert json.loads(out.split(" json ", 1)[1]) == {"v": R}


DEVICE_KEY = "devkey 7f3a, 9c1e5b"
PLANTED = {
    "env": ("BALENA_API_KEY_2=abc def,ghi jkl", ("abc def,ghi jkl", "ghi jkl")),
    "url": ("registry https://robot:R0b0tPassw0rd@registry.example.com", ("R0b0tPassw0rd",)),
    "flag": ("/usr/bin/agent --password Sup3rS3cret! --token=T0k3nValue99",
             ("Sup3rS3cret!", "T0k3nValue99")),
    "bearer": ("Authorization: Bearer eyJ0eXAi.J9.sIgNaTuRe", ("eyJ0eXAi.J9.sIgNaTuRe",)),
    "json": ('{"password": "json pass, word", "ok": true}', ("json pass, word",)),
    "pem": (PEM, tuple(PEM_BODY.split("\n"))),
}


def test_a_real_report_has_no_planted_secret_and_its_config_section_parses(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "uuid": "u1", "deviceApiKey": DEVICE_KEY, "deviceApiKeys": {"x": "keys, with space"},
        "apiEndpoint": "https://fleetuser:EndpointPass1@fleet.example.com",
        "os": {"network": {"wifiKey": "wifi key, spaced"}, "sshKeys": ["ssh-ed25519 AAA"]},
        "installerPassword": "installer secret", "API_KEY_2": "suffix key value",
        "sslKey": PEM}))
    journal = tmp_path / "journal.log"
    journal.write_text("\n".join(line for line, _ in PLANTED.values())
                       + f"\nregistered with key {DEVICE_KEY}\n")
    text = build_report(commands=[Command("OS", ("cat", str(journal))),
                                  Command("OS", ("cat", str(config)))],
                        config_path=config)
    planted = [s for _, secrets in PLANTED.values() for s in secrets] + [
        DEVICE_KEY, "keys, with space", "EndpointPass1", "wifi key, spaced", "installer secret",
        "suffix key value", "7f3a", "9c1e5b"]
    for secret in planted:
        assert secret not in text, f"{secret!r} appears in the report"
    section = text.split("===== CONFIG =====\n", 1)[1].split("\n", 1)[1]
    parsed = json.loads(section)
    assert parsed["uuid"] == "u1" and parsed["deviceApiKey"] == R
    assert parsed["apiEndpoint"] == f"https://{R}@fleet.example.com"
    assert parsed["os"]["sshKeys"] == ["ssh-ed25519 AAA"]
