"""The three target formats and compose files."""

from __future__ import annotations

import pytest

from edgefleet.model import formats
from edgefleet.model.errors import InvalidInput

COMPOSE = """
version: '2.1'
services:
  frontend:
    build: ./frontend
    ports: ["80:80"]
  backend:
    build: ./backend
    expose: ["1234"]
volumes:
  data:
"""


def test_release_from_compose_drops_build_and_assigns_ids() -> None:
    rel = formats.release_from_compose(compose_yaml=COMPOSE, images={
        "frontend": "r/f:1", "backend": "r/b:1"}, release_id=3, first_service_id=10)
    assert rel.id == 3
    assert rel.services["frontend"].composition == {"ports": ["80:80"]}
    assert rel.services["backend"].id == 11
    assert "data" in rel.volumes


def test_compose_yaml_error_names_line() -> None:
    with pytest.raises(InvalidInput, match="line 3"):
        formats.release_from_compose(compose_yaml="services:\n  a:\n  b: [", images={})


def test_apps_json_round_trip_and_validation() -> None:
    rel = formats.release_from_compose(compose_yaml=COMPOSE, images={
        "frontend": "r/f:1", "backend": "r/b:1"})
    doc = {"config": {"X": "1"}, "pinDevice": True, "apps": {"u1": {
        "id": 1, "name": "a", "releases": {"c1": rel.model_dump(mode="json")}}}}
    apps = formats.parse_apps_json(data=doc)
    assert apps.pin_device and not apps.empty
    target = apps.to_target(device_uuid="d1")
    assert target.device.apps["u1"].release is not None
    assert formats.parse_apps_json(data={}).empty
    with pytest.raises(InvalidInput, match=r"apps\.u1\.releases"):
        formats.parse_apps_json(data={"apps": {"u1": {"id": 1, "releases": {}}}})


def test_v2_local_converts_to_v3_and_back() -> None:
    v2 = {"local": {"name": "dev", "config": {}, "apps": {"1": {
        "name": "localapp", "commit": "localrelease", "releaseId": 1, "services": {
            "1": {"serviceName": "main", "serviceId": 1, "imageId": 1,
                  "image": "local_image_main:latest", "environment": {"A": "b"},
                  "labels": {}, "running": True, "restart": "always"}},
        "volumes": {}, "networks": {}}}}}
    t = formats.parse_v2_local(data=v2, device_uuid="d1")
    app = t.device.apps["1"]
    assert app.id == 1 and app.name == "localapp"
    _commit, rel = app.release  # type: ignore[misc]
    assert rel.services["main"].composition == {"image": "local_image_main:latest",
                                                 "restart": "always"}
    back = formats.target_to_v2_local(target=t)
    assert back["local"]["apps"]["1"]["services"]["1"]["serviceName"] == "main"


def test_v3_rejects_bad_documents_with_paths() -> None:
    with pytest.raises(InvalidInput, match="expected"):
        formats.parse_v3(data=[])
    with pytest.raises(InvalidInput, match=r"apps\.u\.id"):
        formats.parse_v3(data={"d": {"apps": {"u": {"id": "not-a-number"}}}})


def test_compose_interpolation() -> None:
    assert formats.interpolate(["$$HOME", "${A:-x}", "${B-y}", "$A", "${A}"], {"A": "1"}) == [
        "$HOME", "1", "y", "1", "1"]
