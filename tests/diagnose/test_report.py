"""The diagnostics report: headers, failures reported, and no secret anywhere in it."""

from __future__ import annotations

import json
from pathlib import Path

from edgefleet.diagnose.report import Command, build_report, default_commands

DEVICE_KEY = "devkey-7f3a9c1e5b"
PROVISIONING = "provkey-1b2c3d4e5f"
WIFI = "wifi-secret-99"
API_KEY = "supervisor-api-key-42"


def test_report_lists_commands_reports_failures_and_redacts_every_secret(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"uuid": "u1", "deviceApiKey": DEVICE_KEY,
                                  "provisioningApiKey": PROVISIONING,
                                  "os": {"network": {"wifiKey": WIFI}}}))
    journal = tmp_path / "journal.log"
    journal.write_text(f"supervisor: registered with key {DEVICE_KEY}\n"
                       f"api: request ?apikey={API_KEY}\nenv BALENA_API_KEY=abcdefgh123\n"
                       f"wpa: psk {WIFI}\n")
    commands = [Command("OS", ("cat", str(journal))),
                Command("OS", ("cat", str(config))),
                Command("NETWORK", ("no-such-command-edgefleet",)),
                Command("TIME", ("sleep", "5"), timeout_s=0.5),
                Command("TIME", ("false",))]
    text = build_report(commands=commands, config_path=config, extra_secrets=[API_KEY])
    assert text.startswith("--- COMMANDS ---\n")
    for c in commands:
        assert f"--- {c.title} ---" in text
    assert "(command not found: no-such-command-edgefleet)" in text
    assert "(timed out after 0 s)" in text or "(timed out after 1 s)" in text
    assert "(exit code 1" in text
    for secret in (DEVICE_KEY, PROVISIONING, WIFI, API_KEY, "abcdefgh123"):
        assert secret not in text, secret
    assert "[REDACTED]" in text and "u1" in text


def test_default_commands_cover_every_section() -> None:
    sections = {c.section for c in default_commands()}
    assert sections == {"ENGINE", "HARDWARE", "NETWORK", "OS", "SUPERVISOR", "TIME"}
