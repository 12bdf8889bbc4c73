"""Real inputs from public repositories, read as balena reads them (issue 12).

Every input of tests/compat/sources.json (see collect_corpus.py) goes through parse, resolve,
plan (empty engine) and the engine create bodies, and is classified:
- accepted / refused-as-balena-does: the same outcome as balena;
- refused-wrongly: balena accepts it, edgefleet refuses it;
- read-differently: edgefleet accepts what balena refuses (and does not implement), or a
  value balena's tests pin is read otherwise;
- crash: anything but InvalidInput.
The last three must be 0. What balena does comes from balena-compose-parser's tests
(`balena` = accept/refuse) or, for the other inputs, its rules (tests/compat/balena_rules.py).
"""

from __future__ import annotations

import json
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from edgefleet.engine import translate
from edgefleet.model import formats
from edgefleet.model.compose_file import load_compose
from edgefleet.model.context import DeviceContext
from edgefleet.model.engine_state import EngineState
from edgefleet.model.errors import InvalidInput
from edgefleet.model.features import GRANTS
from edgefleet.model.resolve import desired_state
from edgefleet.model.service import DesiredState
from edgefleet.plan.context import PlanContext
from edgefleet.plan.planner import plan
from tests.compat.balena_rules import IMPLEMENTED, refusals

# Refused although balena accepts it, on purpose: a named volume that binds a host path
# (issue 11 finding 6); balena does not look at driver_opts.
ON_PURPOSE = ("binds a host path", "is outside the project")
# compose-go fails on a file it cannot read too (env_file, extends, include)
MISSING_FILE = "no file "
# balena's parser refuses these fixtures' fields; edgefleet implements them
IMPLEMENTED_FIXTURES = {"cpu_period", "oom_kill_disable", "stdin_open", "aux_addresses"}
HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
DEVICE = DeviceContext(uuid="dev1", device_type="raspberrypi4-64", arch="aarch64",
                       supervisor_version="17.0.0", lock_root="/tmp/l", scope="compat",
                       host_features=frozenset(GRANTS), check_contracts=False)
# values balena-compose-parser's tests pin for some inputs: (file suffix, check)
PINNED: dict[str, Callable[[DesiredState], bool]] = {
    "services/null_env.yml": lambda d: all(
        v == "" for s in d.apps["app"].services.values() for k, v in s.environment.items()
        if k in ("NULL_VAR", "EMPTY", "UNSET", "NULL")) ,
    "services/volumes_allowed_bind_mount.yml": lambda d: {
        "io.balena.features.balena-socket", "io.balena.features.dbus",
        "io.balena.features.journal-logs"} <= set(d.apps["app"].services["main"].labels),
}


def entries() -> list[dict[str, Any]]:
    return [e for e in json.loads((HERE / "sources.json").read_text())
            if e["kind"] != "support"]


def run(target: Any) -> DesiredState:
    desired = desired_state(target=target, device=DEVICE)
    plan(observed=EngineState(), desired=desired, context=PlanContext(scope="compat"))
    for app in desired.apps.values():
        for spec in app.services.values():
            json.dumps(translate.create_body(spec=spec, resolve_service_container=lambda n: n))
        for net in app.networks.values():
            json.dumps(translate.network_body(spec=net, scope="compat"))
        for vol in app.volumes.values():
            json.dumps(translate.volume_body(spec=vol, scope="compat"))
    return desired


def ours(entry: dict[str, Any]) -> tuple[DesiredState | None, str, Any]:
    """(desired state or None, why refused, the expanded document for the oracle)."""
    path = CORPUS / entry["file"]
    text = path.read_text(errors="replace")
    if entry["kind"] == "apps.json":
        parsed = formats.parse_apps_json(data=json.loads(text))
        return run(parsed.to_target(device_uuid="dev1")), "", None
    if entry["kind"] == "service-composition":
        svc = json.loads(text)
        services = {"1": svc}
        joined = str(svc.get("network_mode", ""))
        if joined.startswith("service:"):  # one service of an app that has the other one
            services["2"] = {"serviceName": joined[8:].strip(), "image": "reg.local/o:1"}
        target = formats.parse_v2_local(data={"local": {"apps": {"1": {
            "services": services}}}}, device_uuid="dev1")
        return run(target), "", None
    try:
        doc: Any = load_compose(text, base=path.parent,
                                variables=entry.get("variables") or {})
    except InvalidInput as exc:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError:
            raw = None
        return None, str(exc), raw
    svcs: Any = doc.get("services") if isinstance(doc, dict) else None
    images = {str(n): f"reg.local/{n}:1" for n in svcs} if isinstance(svcs, dict) \
        else {}
    try:
        rel = formats.release_from_compose(compose_yaml=doc, images=images,
                                           variables=entry.get("variables") or {})
        target = formats.parse_v3(data={"dev1": {"apps": {"app": {
            "id": 1, "releases": {"c1": rel.model_dump(mode="json")}}}}})
        return run(target), "", doc
    except InvalidInput as exc:
        return None, str(exc), doc


def classify(entry: dict[str, Any]) -> tuple[str, str]:
    try:
        desired, why, doc = ours(entry)
    except InvalidInput as exc:
        desired, why, doc = None, str(exc), None
    except Exception:
        return "crash", traceback.format_exc(limit=-3)
    if entry["balena"] == "rules":
        reasons = refusals(doc) if entry["kind"] == "compose" else []
        if desired is None and MISSING_FILE in why:
            reasons = [*reasons, "a file it names is missing"]
        if reasons == ["not a composition"]:
            return "skipped", "not a compose file"
        balena_refuses = bool(reasons)
        implemented = all(r in IMPLEMENTED for r in reasons)
    else:
        balena_refuses = entry["balena"] == "refuse"
        implemented = False
        reasons = ["balena-compose-parser's tests refuse it"] if balena_refuses else []
    if desired is None:
        if balena_refuses:
            return "refused-as-balena-does", why
        if all(any(p in line for p in ON_PURPOSE) for line in why.splitlines()[1:]):
            return "refused-on-purpose", why
        return "refused-wrongly", why
    stem = entry["file"].rsplit("/", 1)[-1].removesuffix(".yml")
    implemented = implemented or (entry["balena"] == "refuse" and stem in IMPLEMENTED_FIXTURES)
    if balena_refuses and not implemented:
        return "read-differently", f"accepted, balena refuses: {reasons}"
    for suffix, check in PINNED.items():
        if entry["file"].endswith(suffix) and not check(desired):
            return "read-differently", f"{suffix}: not read as balena's tests pin it"
    return "accepted", ""


def test_corpus_is_read_as_balena_reads_it() -> None:
    got = {e["file"]: classify(e) for e in entries()}
    counts = Counter(kind for kind, _ in got.values())
    print("\n" + json.dumps(dict(sorted(counts.items())), indent=1))
    bad = {f: r for f, r in got.items()
           if r[0] in ("refused-wrongly", "read-differently", "crash")}
    for f, (kind, why) in sorted(bad.items()):
        print(f"{kind}: {f}\n    {why.strip()[:600]}")
    assert len(got) >= 150
    assert not bad, f"{len(bad)} inputs read unlike balena: {counts}"


def test_every_input_names_its_source() -> None:
    for e in json.loads((HERE / "sources.json").read_text()):
        assert (CORPUS / e["file"]).is_file()
        assert "/" in e["repo"] and len(e["commit"]) == 40 and e["path"]
