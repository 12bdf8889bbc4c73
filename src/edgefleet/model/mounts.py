"""A service's mounts and namespace modes, as `model.resolve` builds them.

Host paths are never the user's to choose: a bind is refused unless a feature label grants
that host path. The lock dir is bound at `/tmp/balena` and `/tmp/resin`. `network_mode`,
`pid` and `ipc` may join the namespaces of another service of the same app only
(`service:<name>`); never another container, app or the supervisor.
"""

from __future__ import annotations

from edgefleet.model.compose import ParsedService
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import Problem
from edgefleet.model.features import GRANTS
from edgefleet.model.service import Mount, NetworkAttachment, NetworkSpec, VolumeSpec

# What hash version 1 granted for balena-socket (one bind) and its DOCKER_HOST.
V1_SOCKET_TARGET = "/var/run/balena.sock"
V1_DOCKER_HOST = "unix:///var/run/balena.sock"


def feature_env(features: set[str], *, v1: bool = False) -> dict[str, str]:
    """The environment the features grant (balena-socket's DOCKER_HOST as version 1 had it
    when `v1`)."""
    env: dict[str, str] = {}
    for feature in sorted(features):
        env.update(GRANTS.get(feature, ((), {}))[1])
    if v1 and "balena-socket" in features:
        env["DOCKER_HOST"] = V1_DOCKER_HOST
    return env


def mounts(*, parsed: ParsedService, features: set[str], app_id: int, service: str,
           volumes: dict[str, VolumeSpec], device: DeviceContext, path: str,
           problems: list[Problem], v1: bool = False,
           refused: frozenset[str] = frozenset()) -> list[Mount]:
    """The service's mounts; `v1=True` builds them as hash version 1 did (for its hash)."""
    out: list[Mount] = []
    granted: dict[tuple[str, str], bool] = {}
    for feature in sorted(features):
        for source, target, ro in GRANTS.get(feature, ((), {}))[0]:
            if v1 and source == "@socket" and target != V1_SOCKET_TARGET:
                continue
            src = device.engine_socket if source == "@socket" else source
            granted[(src, target)] = ro
    for i, vol in enumerate(parsed.volumes):
        where = f"{path}.composition.volumes[{i}]"
        if vol.type == "volume":
            if vol.source not in volumes:
                if vol.source not in refused:  # a refused volume was reported already
                    problems.append(Problem(where, f"volume {vol.source!r} is not declared in"
                                            " the top-level volumes of the release"))
                continue
            out.append(Mount(type="volume", source=volumes[vol.source].engine_name,
                             target=vol.target, read_only=vol.read_only))
        elif vol.type == "tmpfs":
            out.append(Mount(type="tmpfs", target=vol.target))
        elif any(src == vol.source for src, _ in granted):
            same = [k for k in granted if k[0] == vol.source and (v1 or k[1] == vol.target)]
            for key in same:
                granted.pop(key)
            out.append(Mount(type="bind", source=vol.source, target=vol.target,
                             read_only=vol.read_only))
        else:
            problems.append(Problem(where, f"bind mount of host path {vol.source!r} is refused"
                                    " (only named volumes; feature labels grant host paths)"))
    for (source, target), ro in sorted(granted.items()):
        out.append(Mount(type="bind", source=source, target=target, read_only=ro,
                         injected=not v1))
    lock_dir = f"{device.lock_root}/{app_id}/{service}"
    out.append(Mount(type="bind", source=lock_dir, target="/tmp/balena", injected=not v1))
    if not v1:
        out.append(Mount(type="bind", source=lock_dir, target="/tmp/resin", injected=True))
    return out


def network_mode(*, parsed: ParsedService, service: str, services: set[str],
                 networks: dict[str, NetworkSpec], path: str,
                 problems: list[Problem]) -> tuple[str, dict[str, NetworkAttachment]]:
    """The service's network mode and the networks it joins (engine names)."""
    mode = parsed.network_mode
    where = f"{path}.composition.network_mode"
    if mode in ("host", "none", "bridge"):
        return str(mode), {}
    if mode and mode.startswith(("service:", "container:")):
        other = mode.split(":", 1)[1]
        if other not in services or other == service:
            problems.append(Problem(where, f"{mode!r}: network_mode may only name another"
                                    " service of the same release"))
            return "", {}
        return f"service:{other}", {}
    if mode:
        problems.append(Problem(where, f"unsupported network_mode {mode!r}"))
        return "", {}
    wanted = parsed.networks or {"default": {}}
    attached: dict[str, NetworkAttachment] = {}
    for name, conf in wanted.items():
        if name not in networks:
            problems.append(Problem(f"{path}.composition.networks.{name}",
                                    f"network {name!r} is not declared in the release"))
            continue
        if conf.get("link_local_ips"):
            problems.append(Problem(f"{path}.composition.networks.{name}.link_local_ips",
                                    "link_local_ips is not supported (balena refuses it too)"))
        aliases = tuple(dict.fromkeys((service, *conf.get("aliases", ()))))
        attached[networks[name].engine_name] = NetworkAttachment(
            aliases=aliases, ipv4_address=conf.get("ipv4_address"),
            ipv6_address=conf.get("ipv6_address"))
    first = next(iter(attached), "")
    return first, attached


def namespace_modes(*, parsed: ParsedService, service: str, services: set[str], path: str,
                    problems: list[Problem]) -> None:
    """`pid` may join another service of the same release (`service:<name>`, as balena
    allows); `ipc` and `pid` never join another container (another app, the supervisor)."""
    pid = str(parsed.fields.get("pid") or "")
    if pid.startswith("service:"):
        other = pid.split(":", 1)[1].strip()
        if other in services and other != service:
            parsed.fields["pid"] = f"service:{other}"
            pid = ""
    for key in ("pid", "ipc"):
        value = pid if key == "pid" else parsed.fields.get(key)
        if value and str(value).startswith(("service:", "container:")):
            problems.append(Problem(f"{path}.composition.{key}",
                                    f"{key} {value!r} is refused: joining another container's"
                                    f" {key} namespace is not supported (use host or leave it"
                                    " unset)"))
