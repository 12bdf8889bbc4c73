"""A pushed compose file, whatever it holds, is either used or refused with InvalidInput (a
400): hypothesis writes arbitrary YAML documents and the server's own reading of a project
(`load_project`, then the same check a push makes) must never raise anything else (a 500)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.model.errors import InvalidInput
from edgefleet.server.project import load_project
from edgefleet.server.pushes import check_composition

KEYS = st.sampled_from(["image", "build", "context", "dockerfile", "args", "environment",
                        "ports", "volumes", "labels", "command", "network_mode", "depends_on",
                        "restart", "privileged", "web", "db", "x", "0"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from([".", "..", "/", "app", "../x",
                                                           "busybox", "a=b", "80:80"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, st.text(max_size=6)), inner,
                                                 max_size=4)), max_leaves=20)
SERVICES = st.dictionaries(KEYS, st.one_of(VALUES, st.dictionaries(KEYS, VALUES, max_size=5)),
                           max_size=3)
DOCS = st.one_of(VALUES, st.fixed_dictionaries({"services": SERVICES},
                                               optional={"volumes": VALUES,
                                                         "networks": VALUES}))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=DOCS)
def test_any_compose_document_is_used_or_invalid(doc: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="effuzz-") as tmp:
        root = Path(tmp) / "project"
        (root / "app").mkdir(parents=True)
        (root / "Dockerfile").write_text("FROM scratch\n")
        (root / "app" / "Dockerfile").write_text("FROM scratch\n")
        (root / "docker-compose.yml").write_text(yaml.safe_dump(doc))
        with contextlib.suppress(InvalidInput):
            check_composition(load_project(root=root))
