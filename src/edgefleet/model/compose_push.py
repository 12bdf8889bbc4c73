"""What balena's compose parser (@balena/compose-parser) checks when a project is pushed.

Runs on the expanded document (`compose_file.load_compose`), before the release is made:
refuses what balena refuses, with balena's message, and normalises what balena normalises
(allowed host binds become feature labels, `container_name` and `entrypoint: null` removed,
security_opt separators). Devices never run this: a target that was accepted stays accepted.
"""

from __future__ import annotations

import re
from typing import Any

from edgefleet.model.errors import InvalidInput, Problem
from edgefleet.model.features import REQUIRES, contract_label_problem, warn_once

# balena's SERVICE_CONFIG_DENY_LIST, less what edgefleet implements (stdin_open,
# oom_kill_disable, cpu_period: translated into the container's config).
DENIED_SERVICE_KEYS = (
    "blkio_config", "configs", "cpu_count", "cpu_percent", "credential_spec", "deploy",
    "develop", "external_links", "gpus", "isolation", "links", "logging", "mem_swappiness",
    "memswap_limit", "platform", "pull_policy", "runtime", "scale", "secrets", "storage_opt",
)
DENIED_BUILD_KEYS = (
    "additional_contexts", "cache_to", "dockerfile_inline", "entitlements", "isolation",
    "network", "no_cache", "platforms", "privileged", "pull", "secrets", "ssh", "tags",
    "ulimits",
)
SECURITY_OPTS = (re.compile(r"^no-new-privileges([:=].*)?$"),
                 re.compile(r"^apparmor[:=]unconfined$"), re.compile(r"^seccomp[:=]unconfined$"))
IMAGE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,254}$")
PROFILE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# host binds balena turns into feature labels (every path of a label must be bound)
BIND_LABELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("io.balena.features.balena-socket", ("/var/run/docker.sock",)),
    ("io.balena.features.balena-socket", ("/var/run/balena-engine.sock",)),
    ("io.balena.features.dbus", ("/run/dbus",)),
    ("io.balena.features.sysfs", ("/sys",)),
    ("io.balena.features.procfs", ("/proc",)),
    ("io.balena.features.kernel-modules", ("/lib/modules",)),
    ("io.balena.features.firmware", ("/lib/firmware",)),
    ("io.balena.features.journal-logs",
     ("/var/log/journal", "/run/log/journal", "/etc/machine-id")),
)


def _bind_source(entry: Any) -> str | None:
    if isinstance(entry, dict):
        return str(entry.get("source")) if entry.get("type") == "bind" else None
    if isinstance(entry, str) and entry.startswith("/") and ":" in entry:
        return entry.split(":", 1)[0]
    return None


def _binds_to_labels(svc: dict[str, Any]) -> None:
    volumes = svc.get("volumes")
    if not isinstance(volumes, list):
        return
    sources = {s for s in (_bind_source(v) for v in volumes) if s is not None}
    labels: dict[str, str] = {}
    allowed = {p for _, paths in BIND_LABELS for p in paths}
    for label, paths in BIND_LABELS:
        if all(p in sources for p in paths):
            labels[label] = "1"
    dropped = (sources & allowed) - {p for lb, ps in BIND_LABELS if lb in labels for p in ps}
    if dropped:
        warn_once(f"host binds {sorted(dropped)} dropped: each feature label needs all of its"
                  " binds (as balena does)")
    if not sources & allowed:
        return
    svc["volumes"] = [v for v in volumes if _bind_source(v) not in allowed]
    own = svc.get("labels")
    if isinstance(own, list):
        own = {str(i).partition("=")[0]: str(i).partition("=")[2] for i in own}
    svc["labels"] = {**(own if isinstance(own, dict) else {}), **labels}


def _depend_on(svc: dict[str, Any], other: str) -> None:
    deps = svc.get("depends_on")
    if deps is None:
        svc["depends_on"] = [other]
    elif isinstance(deps, list) and other not in deps:
        svc["depends_on"] = [*deps, other]
    elif isinstance(deps, dict) and other not in deps:
        svc["depends_on"] = {**deps, other: {"condition": "service_started"}}


def _service(name: str, svc: Any, problems: list[Problem]) -> Any:
    if not isinstance(svc, dict):
        return svc
    where = f"services.{name}"
    svc = dict(svc)
    for key in DENIED_SERVICE_KEYS:
        if key in svc:
            problems.append(Problem(f"{where}.{key}", f"service.{key} is not allowed"
                                    " (balena refuses it too)"))
    build = svc.get("build")
    if isinstance(build, dict):
        for key in DENIED_BUILD_KEYS:
            if key in build:
                problems.append(Problem(f"{where}.build.{key}", f"service.build.{key} is not"
                                        " allowed (balena refuses it too)"))
        build = build.get("context")
    if isinstance(build, str) and re.match(r"^[a-z]+://|^git@", build):
        problems.append(Problem(f"{where}.build", "a remote build context is not supported"))
    for key in ("network_mode", "pid"):
        if str(svc.get(key) or "").strip().startswith("container:"):
            problems.append(Problem(f"{where}.{key}", f"service.{key} container:<id> is not"
                                    " allowed"))
    opts = svc.get("security_opt")
    if isinstance(opts, list):
        if not all(any(r.match(str(o)) for r in SECURITY_OPTS) for o in opts):
            problems.append(Problem(f"{where}.security_opt", "only no-new-privileges and"
                                    " unconfined apparmor and seccomp are allowed"))
        svc["security_opt"] = [str(o).replace(":", "=", 1) for o in opts]
    if str(svc.get("ipc") or "").strip().startswith("service:"):
        problems.append(Problem(f"{where}.ipc", "service.ipc which references another service"
                                " is not supported"))
    devices = svc.get("devices")
    if isinstance(devices, list) and any(isinstance(d, str) and "=" in d and
                                         not d.startswith("/") for d in devices):
        problems.append(Problem(f"{where}.devices", "devices config with CDI syntax is not"
                                " allowed"))
    for key in ("network_mode", "pid"):  # balena makes the joined service a dependency
        mode = str(svc.get(key) or "").strip()
        if mode.startswith("service:"):
            _depend_on(svc, mode.split(":", 1)[1].strip())
    for v in svc.get("volumes") or [] if isinstance(svc.get("volumes"), list) else []:
        if isinstance(v, dict) and ((v.get("type") == "tmpfs" and v.get("tmpfs")) or
                                    (v.get("type", "volume") == "volume" and v.get("volume"))):
            problems.append(Problem(f"{where}.volumes", "long syntax service.volumes with"
                                    " volume or tmpfs options are not supported"))
    vf = svc.get("volumes_from")
    if isinstance(vf, list) and any(str(v).startswith("container:") for v in vf):
        problems.append(Problem(f"{where}.volumes_from", "volumes_from may not name a"
                                " container"))
    limit = svc.get("pids_limit")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit < 0:
        problems.append(Problem(f"{where}.pids_limit", "a negative pids_limit is not"
                                " supported"))
    profiles = svc.get("profiles")
    if isinstance(profiles, list):
        for profile in profiles:
            if not PROFILE_RE.match(str(profile)):
                problems.append(Problem(f"{where}.profiles", f"{profile!r} is not a valid"
                                        " profile name"))
    image = svc.get("image")
    if image is not None and (not isinstance(image, str) or not IMAGE_RE.match(image)):
        problems.append(Problem(f"{where}.image", f"{str(image)[:80]!r} is not an image"
                                " reference (e.g. nginx:1.27 or registry/repo@sha256:...)"))
    labels = svc.get("labels")
    if isinstance(labels, dict):
        for key, value in labels.items():
            if str(key).startswith(REQUIRES):
                why = contract_label_problem(str(key), str(value))
                if why:
                    problems.append(Problem(f"{where}.labels", why))
    if "entrypoint" in svc and svc["entrypoint"] is None:
        del svc["entrypoint"]
    if "container_name" in svc:
        warn_once("service.container_name is not supported: removed from the composition")
        del svc["container_name"]
    _binds_to_labels(svc)
    return svc


def normalise(doc: Any) -> Any:
    """The document as balena's parser leaves it; InvalidInput with balena's reasons."""
    if not isinstance(doc, dict):
        return doc
    problems: list[Problem] = []
    if "secrets" in doc or "configs" in doc:
        problems.append(Problem("secrets", "top-level secrets and/or configs are not"
                                " supported"))
    out = {k: v for k, v in doc.items() if k not in ("secrets", "configs")}
    if isinstance(out.get("services"), dict):
        out["services"] = {n: _service(str(n), s, problems)
                           for n, s in out["services"].items()}
    for section, denied in (("networks", ("attachable", "external")),
                            ("volumes", ("external",))):
        entries = out.get(section)
        if not isinstance(entries, dict):
            continue
        fixed = {}
        for name, conf in entries.items():
            if isinstance(conf, dict):
                conf = {k: v for k, v in conf.items() if k != "name"}
                for key in denied:
                    if key in conf:
                        problems.append(Problem(f"{section}.{name}.{key}",
                                                f"{section[:-1]}.{key} is not allowed"))
                if section == "networks" and "enable_ipv4" in conf:
                    problems.append(Problem(f"networks.{name}.enable_ipv4",
                                            "enable_ipv4 is not supported"))
            fixed[name] = conf
        out[section] = fixed
    if problems:
        raise InvalidInput("compose file", problems)
    return out
