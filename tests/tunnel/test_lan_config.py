"""The LAN listener (for `edgefleet ssh --via`) is device configuration: config.json's
`lanTunnelPort`, with EDGEFLEET_LAN_TUNNEL_PORT in the environment as an override."""

from __future__ import annotations

import pytest

from edgefleet.device.tunnel.lan import ENV, lan_port
from edgefleet.model.config import parse_config

BASE = {"uuid": "a" * 32, "apiEndpoint": "http://server", "deviceType": "generic-amd64"}


def test_config_json_names_the_lan_tunnel_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    config = parse_config(data={**BASE, "lanTunnelPort": 22222})
    assert config.lan_tunnel_port == 22222
    assert lan_port(config.lan_tunnel_port) == 22222
    assert lan_port(parse_config(data=BASE).lan_tunnel_port) is None, "off unless configured"


def test_a_bad_port_is_ignored_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    config = parse_config(data={**BASE, "lanTunnelPort": 70000})
    assert config.lan_tunnel_port is None
    assert any("lanTunnelPort" in p.path and "1-65535" in p.reason for p in config.ignored)


def test_the_environment_overrides_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "23000")
    assert lan_port(22222) == 23000
    monkeypatch.setenv(ENV, "0")
    assert lan_port(22222) is None, "0 turns the listener off"
    monkeypatch.setenv(ENV, "")
    assert lan_port(22222) == 22222
