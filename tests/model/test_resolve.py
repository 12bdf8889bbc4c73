"""Target resolution: names, injected env, labels, defaults, features and validation."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.model import formats, naming
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput
from edgefleet.model.resolve import desired_state
from edgefleet.model.target import TargetState

DEVICE = DeviceContext(uuid="dev1", device_type="raspberrypi4-64", arch="aarch64",
                       supervisor_version="9.9.9", lock_root="/tmp/locks", scope="s1",
                       supervisor_api_keys={"app1": "k-app1"},
                       supervisor_api_host_for_bridge="10.114.104.1")


def target(services: dict[str, Any], *, volumes: dict[str, Any] | None = None,
           networks: dict[str, Any] | None = None, commit: str = "abc") -> TargetState:
    doc = {"dev1": {"name": "box", "config": {}, "apps": {"app1": {
        "id": 11, "name": "myapp", "releases": {commit: {
            "id": 5, "services": services, "volumes": volumes or {},
            "networks": networks or {}}}}}}}
    return formats.parse_v3(data=doc)


def svc(composition: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": 1, "image_id": 2, "image": "reg/img:1", "composition": composition or {},
            **extra}


def test_names_networks_volumes_and_aliases() -> None:
    t = target({"frontend": svc({"network_mode": "host", "volumes": ["data:/d"]}),
                "backend": svc({"volumes": ["data:/x"]})}, volumes={"data": {}})
    app = desired_state(target=t, device=DEVICE).apps["app1"]
    fe, be = app.services["frontend"], app.services["backend"]
    assert fe.container_name == "frontend_2_5_abc"
    assert fe.network_mode == "host" and fe.networks == {}
    assert be.network_mode == "app1_default"
    assert be.networks["app1_default"].aliases == ("backend",)
    assert app.networks["default"].engine_name == "app1_default"
    assert app.volumes["data"].engine_name == "11_data"
    assert [m.source for m in be.mounts if m.type == "volume"] == ["11_data"]
    lock = [m for m in be.mounts if m.target == "/tmp/balena"]
    assert lock[0].source == "/tmp/locks/11/backend" and lock[0].type == "bind"


def test_injected_env_user_wins_and_supervisor_labels_win() -> None:
    t = target({"main": svc({"environment": {"A": "compose", "BALENA_APP_NAME": "mine"},
                             "labels": {naming.APP_ID: "999", "io.resin.update.strategy":
                                        "hand-over"}},
                            environment={"A": "target"})})
    spec = desired_state(target=t, device=DEVICE).apps["app1"].services["main"]
    assert spec.environment["A"] == "target"
    assert spec.environment["BALENA_APP_NAME"] == "mine"
    assert spec.environment["RESIN_DEVICE_TYPE"] == "raspberrypi4-64"
    assert spec.environment["BALENA_APP_LOCK_PATH"] == "/tmp/balena/updates.lock"
    assert spec.labels[naming.APP_ID] == "11"
    assert spec.labels[naming.SCOPE] == "s1"
    assert spec.update_strategy == "hand-over"


def test_single_service_default_composition() -> None:
    t = target({"main": svc()})
    app = desired_state(target=t, device=DEVICE).apps["app1"]
    spec = app.services["main"]
    assert spec.privileged and spec.network_mode == "host" and spec.restart == "always"
    assert [(m.source, m.target) for m in spec.mounts if m.type == "volume"] == [
        ("11_resin-data", "/data")]
    assert "resin-data" in app.volumes


def test_supervisor_api_feature_injects_address_and_key() -> None:
    t = target({"a": svc({"labels": {"io.balena.features.supervisor-api": "1"}}),
                "b": svc({"network_mode": "host",
                          "labels": {"io.balena.features.supervisor-api": "1"}})})
    app = desired_state(target=t, device=DEVICE).apps["app1"]
    assert app.services["a"].environment["BALENA_SUPERVISOR_ADDRESS"] == (
        "http://10.114.104.1:48484")
    assert app.services["b"].environment["BALENA_SUPERVISOR_HOST"] == "127.0.0.1"
    assert app.services["a"].environment["BALENA_SUPERVISOR_API_KEY"] == "k-app1"


def test_bind_mount_refused_unless_a_feature_grants_it() -> None:
    with pytest.raises(InvalidInput) as exc:
        target({"a": svc({"volumes": ["/etc:/host-etc"]})})
    assert "services.a.composition.volumes[0]" in str(exc.value)
    assert "refused" in str(exc.value)
    ok = target({"a": svc({"volumes": ["/run/dbus:/host/run/dbus"],
                           "labels": {"io.balena.features.dbus": "1"}})})
    spec = desired_state(target=ok, device=DEVICE).apps["app1"].services["a"]
    assert any(m.source == "/run/dbus" for m in spec.mounts)


def test_unsupported_feature_is_refused() -> None:
    t = target({"a": svc({"labels": {"io.balena.features.gpu": "1"}})})  # fine at the door
    with pytest.raises(InvalidInput, match="feature 'gpu' is not supported"):
        desired_state(target=t, device=DEVICE)  # not on this host


def test_every_problem_is_listed_with_its_path() -> None:
    with pytest.raises(InvalidInput) as exc:
        target({"bad name": svc(), "a": svc({"depends_on": ["ghost"], "volumes": ["nope:/x"],
                                             "networks": ["other"]}, environment={"1X": "y"})})
    text = str(exc.value)
    for fragment in ("invalid service name", "unknown service 'ghost'",
                     "volume 'nope' is not declared", "network 'other' is not declared",
                     "environment.1X"):
        assert fragment in text


def test_config_hash_ignores_release_and_supervisor_version_but_not_env() -> None:
    a = desired_state(target=target({"m": svc({"environment": {"X": "1"}})}, commit="c1"),
                      device=DEVICE).apps["app1"].services["m"]
    b = desired_state(target=target({"m": svc({"environment": {"X": "1"}})}, commit="c2"),
                      device=DEVICE.model_copy(update={"supervisor_version": "10.0.0"})
                      ).apps["app1"].services["m"]
    c = desired_state(target=target({"m": svc({"environment": {"X": "2"}})}),
                      device=DEVICE).apps["app1"].services["m"]
    assert a.config_hash() == b.config_hash()
    assert a.container_name != b.container_name
    assert a.config_hash() != c.config_hash()
