"""`edgefleet up` logs the CLI in to the server it started, unless the user is logged in to
another one (then it leaves that login alone and prints the login line instead)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.client import Login, save_login
from edgefleet.up import Up, UpOptions, next_commands


@pytest.fixture
def up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Up:
    for name in ("EDGEFLEET_SERVER", "EDGEFLEET_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EDGEFLEET_CLIENT_CONFIG", str(tmp_path / "client.json"))
    said: list[str] = []
    return Up(options=UpOptions(data_dir=tmp_path / "up", example=tmp_path, port=48999),
              say=said.append)


def test_no_login_yet_logs_in_to_this_server(up: Up, tmp_path: Path) -> None:
    assert up.ensure_login("t1")
    assert json.loads((tmp_path / "client.json").read_text()) == {
        "url": "http://127.0.0.1:48999", "token": "t1"}
    assert up.ensure_login("t2"), "a new token of the same server (after --reset) replaces it"
    assert json.loads((tmp_path / "client.json").read_text())["token"] == "t2"
    assert not any(line.startswith("edgefleet login")
                   for line in next_commands(up=up, device="d", logged_in=True))


def test_a_login_elsewhere_is_left_alone(up: Up, tmp_path: Path) -> None:
    save_login(Login(url="https://fleet.example.com", token="mine"))
    assert not up.ensure_login("t1")
    assert json.loads((tmp_path / "client.json").read_text())["token"] == "mine"
    commands = next_commands(up=up, device="d", logged_in=False)
    assert any(c.startswith("edgefleet login --url http://127.0.0.1:48999") for c in commands)
