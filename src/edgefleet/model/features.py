"""Feature labels (`io.balena.features.*`) and contract labels (`...features.requires.*`).

A feature is on when its label is truthy as balena reads it (`1`, `true`, `on`, any case);
`0`, `false`, `off` or anything else leaves it off. A feature grants host binds and
environment (`GRANTS`); features balena knows but this host cannot give are refused when asked
for; features that only matter to balenaOS are ignored with a log line (`IGNORED`).

A contract label (`requires.sw.arch`, `requires.sw.supervisor`, `requires.hw.device-type`,
`requires.sw.l4t`) states what the device must be. Unmet, it rejects the release, unless the
service is labelled `io.balena.features.optional`, which skips the service instead.
"""

from __future__ import annotations

import logging
import re

from edgefleet.model import naming
from edgefleet.model.context import DeviceContext

log = logging.getLogger("edgefleet.compose")

TRUTHY = frozenset({"1", "true", "on"})
REQUIRES = naming.FEATURE_PREFIX + "requires."
OPTIONAL = naming.FEATURE_PREFIX + "optional"
SOCKET_TARGETS = ("/host/run/balena-engine.sock", "/var/run/balena-engine.sock",
                  "/var/run/docker.sock", "/var/run/balena.sock")

# feature → (binds (source, target, read_only), env); "@socket" is the engine socket
GRANTS: dict[str, tuple[tuple[tuple[str, str, bool], ...], dict[str, str]]] = {
    "supervisor-api": ((), {}),
    "balena-api": ((), {}),
    "balena-socket": (tuple(("@socket", t, False) for t in SOCKET_TARGETS),
                      {"DOCKER_HOST": "unix:///host/run/balena-engine.sock"}),
    "dbus": ((("/run/dbus", "/host/run/dbus", False),),
             {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/host/run/dbus/system_bus_socket"}),
    "sysfs": ((("/sys", "/sys", False),), {}),
    "procfs": ((("/proc", "/proc", False),), {}),
    "kernel-modules": ((("/lib/modules", "/lib/modules", False),), {}),
    "firmware": ((("/lib/firmware", "/lib/firmware", False),), {}),
    "journal-logs": ((("/var/log/journal", "/var/log/journal", True),
                      ("/run/log/journal", "/run/log/journal", True),
                      ("/etc/machine-id", "/etc/machine-id", True)), {}),
    "gpu": ((), {}),
}
LEGACY_NAMES = {"resin-api": "balena-api"}
IGNORED = {
    "extra-firmware": "balenaOS loads extra firmware; edgefleet runs on a general host",
    "host-os.board-rev": "a balenaOS board revision file; no such file on a general host",
}
_warned: set[str] = set()


def truthy(value: object) -> bool:
    """balena's checkTruthy: `1`, `true`, `on` (any case) or True."""
    return value is True or str(value).strip().lower() in TRUTHY


def warn_once(message: str) -> None:
    """Log a compose warning once per process (resolution runs on every target)."""
    if message not in _warned and len(_warned) < 1000:
        _warned.add(message)
        log.warning("%s", message)


def enabled(labels: dict[str, str]) -> set[str]:
    """The features a service's (normalised) labels turn on; contracts and `optional` are not
    features."""
    out = set()
    for key, value in labels.items():
        if not key.startswith(naming.FEATURE_PREFIX) or key.startswith(REQUIRES) \
                or key == OPTIONAL or not truthy(value):
            continue
        name = key[len(naming.FEATURE_PREFIX):]
        out.add(LEGACY_NAMES.get(name, name))
    return out


def refused(feature: str, device: DeviceContext) -> str | None:
    """Why a feature cannot be given here, or None; ignored features are logged."""
    if feature in IGNORED:
        warn_once(f"feature label {naming.FEATURE_PREFIX}{feature} ignored: {IGNORED[feature]}")
        return None
    if feature not in GRANTS:
        warn_once(f"unknown feature label {naming.FEATURE_PREFIX}{feature} ignored")
        return None
    if feature not in device.host_features:
        return f"feature {feature!r} is not supported on this host"
    return None


def unmet_contract(labels: dict[str, str], device: DeviceContext) -> str | None:
    """The first `requires.*` label this device does not meet, as a reason; None if all met."""
    facts = {"sw.arch": device.arch, "arch.sw": device.arch,
             "hw.device-type": device.device_type, "sw.supervisor": device.supervisor_version,
             "sw.l4t": device.l4t_version}
    for key, wanted in sorted(labels.items()):
        if not key.startswith(REQUIRES):
            continue
        kind = key[len(REQUIRES):]
        have = facts.get(kind)
        if kind not in facts:
            warn_once(f"contract requirement {kind!r} is not known here: ignored")
            continue
        if not have:
            return f"requires {kind} {wanted!r}, this device has none"
        if kind in ("sw.arch", "arch.sw"):
            have = ARCH_ALIASES.get(have, have)
        ok = semver_satisfies(have, wanted) if kind in VERSIONED \
            else have in {w.strip() for w in wanted.split(",")}
        if not ok:
            return f"requires {kind} {wanted!r}, this device has {have!r}"
    return None


VERSIONED = frozenset({"sw.supervisor", "sw.l4t"})
ARCH_ALIASES = {"x86_64": "amd64", "arm64": "aarch64", "armhf": "armv7hf"}
CONTRACT_ARCHES = frozenset({"aarch64", "rpi", "amd64", "armv7hf", "i386"})


def contract_label_problem(key: str, value: str) -> str | None:
    """What balena's parser says about a malformed contract label at push, or None."""
    kind = key[len(REQUIRES):]
    if kind in ("arch.sw", "sw.arch") and value not in CONTRACT_ARCHES:
        return (f"invalid value for label {key!r}: expected one of"
                f" {', '.join(sorted(CONTRACT_ARCHES))}, got {value!r}")
    if (kind in VERSIONED or kind in ("sw.balena-os", "sw.linux")) and not valid_range(value):
        return f"invalid value for label {key!r}: expected a semver range, got {value!r}"
    return None


def valid_range(wanted: str) -> bool:
    """Whether `wanted` is a version range `semver_satisfies` understands."""
    for alternative in wanted.split("||"):
        conds = alternative.replace(">= ", ">=").replace("<= ", "<=").split()
        if not conds:
            return False
        for cond in conds:
            op = re.match(r"^(>=|<=|>|<|=|\^|~)?", cond).group(0)  # type: ignore[union-attr]
            rest = cond[len(op):]
            if not re.fullmatch(r"v?\d+(\.(\d+|[xX*]))?(\.(\d+|[xX*]))?([-+][0-9A-Za-z.-]+)?",
                                rest):
                return False
    return True


_VER = re.compile(r"^v?(\d+)(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?")


def _version(text: str) -> tuple[int, int, int] | None:
    m = _VER.match(text.strip())
    if not m:
        return None
    parts = [int(p) if p and p.isdigit() else 0 for p in m.groups()]
    return parts[0], parts[1], parts[2]


def _one(have: tuple[int, int, int], cond: str) -> bool:
    op = re.match(r"^(>=|<=|>|<|=|\^|~)?", cond).group(0)  # type: ignore[union-attr]
    want = _version(cond[len(op):])
    if want is None:
        return False
    precision = len([p for p in cond[len(op):].split(".") if p.strip().isdigit()])
    if op == ">=":
        return have >= want
    if op == "<=":
        return have <= want
    if op == ">":
        return have > want
    if op == "<":
        return have < want
    if op == "^":
        return have >= want and have[0] == want[0]
    if op == "~":
        return have >= want and have[:2] == want[:2]
    return have[:precision] == want[:precision]


def semver_satisfies(version: str, wanted: str) -> bool:
    """npm-style range check (`>=12.1`, `^2.0.0 || ~3.1`, `1.x`, `>=1 <3`)."""
    have = _version(version)
    if have is None:
        return False
    for alternative in wanted.split("||"):
        conds = alternative.replace(">= ", ">=").replace("<= ", "<=").split()
        if conds and all(_one(have, c) for c in conds):
            return True
    return False
