"""Fuzzing compose files and target states: nothing but InvalidInput ever comes out (issues 11
and 12): no AttributeError, TypeError, RecursionError or ValueError from deep inside."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.engine import translate
from edgefleet.model import formats
from edgefleet.model.compose import IGNORED_KEYS, SUPPORTED_KEYS
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput
from edgefleet.model.resolve import desired_state

DEVICE = DeviceContext(uuid="d")
KEYS = sorted(SUPPORTED_KEYS | set(IGNORED_KEYS) | {"x-a", "junk"})
SUB_KEYS = ["target", "published", "source", "type", "aliases", "condition", "test",
            "soft", "hard", "ipv4_address", "read_only", "driver", "external", "o", "device"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True), st.text(max_size=12),
                    st.sampled_from(["80:80", "a:/b", "service:a", "container:x", "host",
                                     "1g", "10s", "on", "[::1]:1:1", "a=b", "NET_ADMIN"]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(SUB_KEYS) | st.text(max_size=5),
                                            inner, max_size=4)),
    max_leaves=12)
service = st.one_of(st.dictionaries(st.sampled_from(KEYS), values, max_size=6), values)
compose = st.fixed_dictionaries(
    {"services": st.dictionaries(st.sampled_from(["a", "b", "web"]), service, min_size=1,
                                 max_size=3)},
    optional={"volumes": st.one_of(values, st.dictionaries(st.sampled_from(["v", "w"]),
                                                           values, max_size=2)),
              "networks": st.one_of(values, st.dictionaries(st.sampled_from(["n"]), values,
                                                            max_size=2)),
              "version": values, "name": values, "x-extra": values, "include": values})


def only_invalid_input(compose_doc: Any) -> None:
    """Compose text → release → target → desired state → create bodies."""
    try:
        text = compose_doc if isinstance(compose_doc, str) else yaml.safe_dump(compose_doc)
        names = compose_doc.get("services", {}) if isinstance(compose_doc, dict) else {}
        images = {str(n): "reg/x:1" for n in names} if isinstance(names, dict) else {}
        rel = formats.release_from_compose(compose_yaml=text, images=images)
        target = formats.parse_v3(data={"d": {"apps": {"app": {
            "id": 1, "releases": {"c": rel.model_dump(mode="json")}}}}})
        for app in desired_state(target=target, device=DEVICE).apps.values():
            for spec in app.services.values():
                json.dumps(translate.create_body(spec=spec,
                                                 resolve_service_container=lambda n: n))
            for net in app.networks.values():
                translate.network_body(spec=net, scope="s")
    except InvalidInput:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(compose)
def test_compose_documents(doc: dict[str, Any]) -> None:
    only_invalid_input(doc)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=" \n:-[]{}'\"&*!|>#,.a1", max_size=80))
def test_compose_text(text: str) -> None:
    only_invalid_input(text)


target_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                     st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(["id", "image", "image_id", "composition",
                                        "environment", "labels", "running", "contract"]),
                       target_values, max_size=6),
       st.dictionaries(st.sampled_from(["driver", "driver_opts", "labels", "ipam",
                                        "external", "internal"]), target_values, max_size=3))
def test_target_states(svc: dict[str, Any], net: dict[str, Any]) -> None:
    doc = {"d": {"name": "x", "config": {}, "apps": {"app": {"id": 1, "releases": {"c": {
        "services": {"s": svc}, "networks": {"n": net}, "volumes": {"v": net}}}}}}}
    try:
        target = formats.parse_v3(data=doc)
        desired_state(target=target, device=DEVICE)
        formats.parse_v2_local(data={"local": {"apps": {"1": {"services": {"1": svc}}}}},
                               device_uuid="d")
        formats.parse_apps_json(data={"apps": {"1": {"services": {"1": svc}}}})
    except InvalidInput:
        pass


@pytest.mark.parametrize("text", [
    "services: " + "[" * 20000 + "]" * 20000,
    "services:\n  web:\n    image: x\n    cpu_shares: " + "9" * 5000 + "\n",
    "services: {web: [1, 2]}",
    "services: {web: {ports: [{}]}}",
    "services: {web: {networks: {n: [1]}}}\nnetworks: {n: {}}",
    "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,"
    "*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\nservices: {web: {image: x}}",
])
def test_known_bad_inputs_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        rel = formats.release_from_compose(compose_yaml=text, images={"web": "x"})
        formats.parse_v3(data={"d": {"apps": {"app": {
            "id": 1, "releases": {"c": rel.model_dump(mode="json")}}}}})
