"""`edgefleet config`: validated, backed-up, atomic edits; redaction; refusals change nothing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edgefleet.cli import app
from edgefleet.model.config import redact

runner = CliRunner()
SECRET = "s3cr3t-device-key"


def write(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"uuid": "abc", "deviceApiKey": SECRET, "listenPort": 48484,
                                "deviceApiKeys": {"api.example": SECRET},
                                "os": {"network": {"wifiKey": "wifipass"}}}))
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_show_redacts_at_any_depth_unless_revealed(tmp_path: Path) -> None:
    path = write(tmp_path)
    code, out = run("config", "show", "--config", str(path))
    assert code == 0 and SECRET not in out and "wifipass" not in out and "abc" in out
    code, out = run("config", "show", "--config", str(path), "--reveal")
    assert SECRET in out
    assert redact(data={"a": [{"provisioningApiKey": "x"}]}) == {
        "a": [{"provisioningApiKey": "[REDACTED]"}]}


def test_set_validates_backs_up_and_replaces(tmp_path: Path) -> None:
    path = write(tmp_path)
    before = path.read_text()
    code, _ = run("config", "set", "dnsServers", "1.1.1.1,8.8.8.8", "--config", str(path))
    assert code == 0
    assert json.loads(path.read_text())["dnsServers"] == "1.1.1.1,8.8.8.8"
    assert (tmp_path / "config.json.backup").read_text() == before
    code, out = run("config", "get", "dnsServers", "--config", str(path))
    assert out.strip() == "1.1.1.1,8.8.8.8"
    code, _ = run("config", "unset", "dnsServers", "--config", str(path))
    assert code == 0 and "dnsServers" not in json.loads(path.read_text())


def test_invalid_changes_are_refused_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = write(tmp_path)
    before = path.read_text()
    for args in (("dnsServers", "not-an-ip"), ("listenPort", "99999"),
                 ("appUpdatePollInterval", "\"soon\"")):
        code, out = run("config", "set", *args, "--config", str(path))
        assert code == 2, args
        assert args[0] in out
        assert path.read_text() == before
    assert not list(tmp_path.glob(".config.*")), "no temp file left behind"


def test_invalid_json_is_reported_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"uuid": "a",,}')
    code, out = run("config", "validate", "--config", str(path))
    assert code == 2 and "line 1" in out
    code, _ = run("config", "set", "uuid", "b", "--config", str(path))
    assert code == 2 and path.read_text() == '{"uuid": "a",,}'


def test_validate_names_an_optional_field_the_supervisor_would_ignore(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"uuid": "a", "dnsServers": "127.0.0.1#5399"}))
    code, out = run("config", "validate", "--config", str(path))
    assert code == 2 and "dnsServers" in out and "default" in out
    path.write_text(json.dumps({"uuid": "a", "appUpdatePollInterval": 1000}))
    code, out = run("config", "validate", "--config", str(path))
    assert code == 0 and "10000 ms" in out and "valid" in out
