"""The config hash: versioned, normalised, pinned; version-1 containers are kept on upgrade."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgefleet.model import formats
from edgefleet.model.confighash import HASHED, NOT_HASHED
from edgefleet.model.context import DeviceContext
from edgefleet.model.resolve import desired_state
from edgefleet.model.service import ServiceSpec
from tests.model.hash_cases import CASES, one
from tests.support.oldcode import old_source

DEVICE = {"uuid": "dev1", "device_type": "raspberrypi4-64", "arch": "aarch64",
          "supervisor_version": "9.9.9", "lock_root": "/tmp/locks", "scope": "s1",
          "supervisor_api_keys": {"app1": "k-app1"},
          "supervisor_api_host_for_bridge": "10.114.104.1"}


def specs(doc: dict[str, Any]) -> dict[str, ServiceSpec]:
    desired = desired_state(target=formats.parse_v3(data=doc), device=DeviceContext(**DEVICE))
    return dict(desired.apps["app1"].services)


# Pinned on purpose: a change here recreates containers on every device after an upgrade.
GOLDEN = {
    "default-composition": {"s": "2:a678c4e103ebb67657fa5f8be36d1133"},
    "image-only": {"s": "2:28bfb65a1aefe7c48f84539a486b3b37"},
    "command-string": {"s": "2:4a713113b78cc621466206cef84dd5eb"},
    "entrypoint-list": {"s": "2:7a3415d7dffec81986604b59fa60544b"},
    "env-and-target-env": {"s": "2:38dcd950dfd91251144bb03070cf745c"},
    "env-list": {"s": "2:2c691f51d797c5c39420741215c22f49"},
    "labels": {"s": "2:42bd7e0ab3b4db2194c475d5495bdf10"},
    "ports": {"s": "2:a599f46a73a2239c2ef2c7d282302335"},
    "volumes": {"s": "2:0d53916ff0226a65df859fd283779c07"},
    "networks": {"a": "2:e25e575dbf14f8fcf0f8cac6d3660991",
                 "b": "2:e14b8468dfa98cb6f02d8a9cbe721688"},
    "host-network": {"s": "2:12bb0163ee4c7851dcad4617b1ed7990"},
    "service-network": {"a": "2:48454c568238d9bc32a07a7bb1f5880e",
                        "b": "2:a8484545d79a764f52752f123d677e86"},
    "caps-devices": {"s": "2:9b4040fdfbfeb1cd8240ce8d6f7a8147"},
    "dns-hosts": {"s": "2:44990eae59cdf962b258ff75cd2c1e23"},
    "limits": {"s": "2:de0e3bdd5fa26ad5e99619434a3f7faf"},
    "healthcheck": {"s": "2:93a72c84dfab028007d43ba70498b0e9"},
    "misc": {"s": "2:dba82a8140182293fcf0f1bb64406b36"},
    "features": {"s": "2:4d0c3d82e42d01fd6a6c75c57d6ccfcb"},
    "restart-no": {"s": "2:5a28510c8392a6a680b78911b9dc8642"},
    "not-running": {"s": "2:94b5b466c71199f117c1994b5cb4b14d"},
}


def test_every_field_is_classified_hashed_or_not() -> None:
    fields = set(ServiceSpec.model_fields)
    assert fields == HASHED | NOT_HASHED and not HASHED & NOT_HASHED


def test_golden_hashes() -> None:
    got = {name: {s: spec.config_hash() for s, spec in specs(doc).items()}
           for name, doc in CASES.items()}
    assert got == GOLDEN


def test_reordering_set_like_lists_keeps_the_hash() -> None:
    a = one({"ports": ["80:80", "90:90"], "volumes": ["d:/d", "e:/e"],
             "cap_add": ["A", "B"], "cap_drop": ["C", "D"], "devices": ["/dev/a", "/dev/b"],
             "dns": ["1.1.1.1", "8.8.8.8"], "extra_hosts": ["a:1.1.1.1", "b:2.2.2.2"],
             "group_add": ["x", "y"], "security_opt": ["p", "q"]})
    b = one({"ports": ["90:90", "80:80"], "volumes": ["e:/e", "d:/d"],
             "cap_add": ["B", "A"], "cap_drop": ["D", "C"], "devices": ["/dev/b", "/dev/a"],
             "dns": ["8.8.8.8", "1.1.1.1"], "extra_hosts": ["b:2.2.2.2", "a:1.1.1.1"],
             "group_add": ["y", "x"], "security_opt": ["q", "p"]})
    for doc in (a, b):
        doc["dev1"]["apps"]["app1"]["releases"]["c0ffee"]["volumes"] = {"d": {}, "e": {}}
    assert specs(a)["s"].config_hash() == specs(b)["s"].config_hash()


def test_what_edgefleet_injects_is_not_hashed() -> None:
    base = specs(one({"environment": {"A": "1"}}))["s"]
    spec = base.model_copy(update={
        "environment": {**base.environment, "NEW_INJECTED": "x"},
        "injected_env": base.injected_env | {"NEW_INJECTED"}})
    assert spec.config_hash() == base.config_hash()
    changed = base.model_copy(update={"environment": {**base.environment, "A": "2"}})
    assert changed.config_hash() != base.config_hash()


OLD_HASHES = """
import json, sys
from edgefleet.model import formats
from edgefleet.model.context import DeviceContext
from edgefleet.model.resolve import desired_state
cases, device = json.load(sys.stdin)
out = {}
for name, doc in cases.items():
    d = desired_state(target=formats.parse_v3(data=doc), device=DeviceContext(**device))
    out[name] = {s: spec.config_hash() for s, spec in d.apps["app1"].services.items()}
print(json.dumps(out))
"""


def test_version_1_hashes_are_recomputed_exactly(tmp_path: Path) -> None:
    """The hash the previous edgefleet put on each container is `legacy_hash`, so an upgrade
    with the same target keeps every container."""
    src = old_source(tmp_path)
    out = subprocess.run([sys.executable, "-c", OLD_HASHES],
                         input=json.dumps([CASES, DEVICE]), capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(src)}, timeout=120, check=True)
    old = json.loads(out.stdout)
    new = {name: {s: spec.legacy_hash for s, spec in specs(doc).items()}
           for name, doc in CASES.items()}
    assert new == old
    for name, doc in CASES.items():
        for s, spec in specs(doc).items():
            assert spec.hash_matches(old[name][s]), (name, s)
            assert spec.config_hash().startswith("2:")
