"""Target resolution: a v3 `TargetState` → a `DesiredState` of fully resolved `ServiceSpec`s.

Applies compose normalisation, compat §2 validation, default composition for single-service
apps, injected environment, supervisor labels, the lock-dir bind and feature-label grants.
Raises `InvalidInput` listing every problem with its field path; never returns half a state.
"""

from __future__ import annotations

import re
from typing import Any

from edgefleet.model import features as feat
from edgefleet.model import naming
from edgefleet.model.compose import parse_service
from edgefleet.model.compose_values import ports
from edgefleet.model.confighash import V2_ONLY_ENV, config_hash_v1
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput, Problem
from edgefleet.model.mounts import feature_env, mounts, namespace_modes, network_mode
from edgefleet.model.service import (
    AppSpec,
    DesiredState,
    IpamConfig,
    NetworkSpec,
    ServiceSpec,
    VolumeSpec,
)
from edgefleet.model.target import AppTarget, ReleaseTarget, ServiceTarget, TargetState

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
ENV_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
CONFIG_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[!#-&(-~]+$")  # printable ASCII, no space, no quotes
MAX_STR = 255
IMAGE_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,511}$")

# For a release without a compose file (edgefleet's server sends it with an empty composition,
# where a compose service always keeps its `image` or `build`): balena's default composition.
SINGLE_SERVICE_COMPOSITION: dict[str, Any] = {
    "privileged": True,
    "network_mode": "host",
    "restart": "always",
    "volumes": ["resin-data:/data"],
}

def desired_state(*, target: TargetState, device: DeviceContext) -> DesiredState:
    """Resolve and validate a whole target; raises InvalidInput with every problem found."""
    problems: list[Problem] = []
    for key, value in target.device.config.items():
        if not CONFIG_RE.match(key):
            problems.append(Problem(f"config.{key}", "invalid config variable name"))
        if len(value) > 10_000:
            problems.append(Problem(f"config.{key}", "value too long"))
    apps: dict[str, AppSpec] = {}
    for app_uuid, app in target.device.apps.items():
        spec = _app(app_uuid=app_uuid, app=app, device=device, problems=problems)
        if spec is not None:
            apps[app_uuid] = spec
    if problems:
        raise InvalidInput("target state", problems)
    return DesiredState(apps=apps)


def _app(*, app_uuid: str, app: AppTarget, device: DeviceContext,
         problems: list[Problem]) -> AppSpec | None:
    path = f"apps.{app_uuid}"
    if not NAME_RE.match(app_uuid) or len(app_uuid) > MAX_STR:
        problems.append(Problem(path, "invalid app uuid"))
    chosen = app.release
    if chosen is None:
        return AppSpec(app_uuid=app_uuid, app_id=app.id, name=app.name,
                       app_class=app.app_class, is_host=app.is_host)
    commit, release = chosen
    rpath = f"{path}.releases.{commit}"
    networks = _networks(app_uuid=app_uuid, app_id=app.id, release=release, path=rpath,
                         problems=problems)
    volumes = _volumes(app_uuid=app_uuid, app_id=app.id, release=release, path=rpath,
                       problems=problems)
    services: dict[str, ServiceSpec] = {}
    single = len(release.services) == 1
    _check_depends(release=release, path=rpath, problems=problems)
    for name, svc in release.services.items():
        spath = f"{rpath}.services.{name}"
        composition = svc.composition
        if single and not composition:
            composition = dict(SINGLE_SERVICE_COMPOSITION)
            if "resin-data" not in volumes:
                volumes["resin-data"] = VolumeSpec(app_uuid=app_uuid, app_id=app.id,
                                                   name="resin-data")
        spec = _service(
            name=name, svc=svc, composition=composition, app=app, app_uuid=app_uuid,
            commit=commit, release=release, networks=networks, volumes=volumes, device=device,
            path=spath, problems=problems,
        )
        if spec is not None:
            services[name] = spec
    return AppSpec(app_uuid=app_uuid, app_id=app.id, name=app.name, app_class=app.app_class,
                   is_host=app.is_host, commit=commit, release_id=release.id,
                   services=services, networks=networks, volumes=volumes)


def _networks(*, app_uuid: str, app_id: int, release: ReleaseTarget, path: str,
              problems: list[Problem]) -> dict[str, NetworkSpec]:
    out = {"default": NetworkSpec(app_uuid=app_uuid, app_id=app_id, name="default")}
    for name, net in release.networks.items():
        if not NAME_RE.match(name):
            problems.append(Problem(f"{path}.networks.{name}", "invalid network name"))
            continue
        ipam = net.ipam or {}
        try:
            pools = tuple(IpamConfig(**c) for c in ipam.get("config", []) or [])
        except (TypeError, ValueError) as exc:
            problems.append(Problem(f"{path}.networks.{name}.ipam", str(exc)))
            pools = ()
        if net.external or (net.driver or "bridge") not in ("bridge", "default") or \
                (ipam.get("driver") or "default") != "default":
            problems.append(Problem(f"{path}.networks.{name}", "only bridge networks with the"
                                    " default IPAM driver made by the release are supported"
                                    " (balena refuses external networks and other drivers)"))
            continue
        out[name] = NetworkSpec(
            app_uuid=app_uuid, app_id=app_id, name=name,
            driver="bridge" if net.driver in (None, "", "default") else net.driver,
            driver_opts=net.driver_opts, ipam_driver=ipam.get("driver") or "default",
            ipam_config=pools, ipam_options=ipam.get("options") or {},
            enable_ipv6=net.enable_ipv6, internal=net.internal, labels=net.labels,
            config_only=net.config_only,
        )
    return out


def _volumes(*, app_uuid: str, app_id: int, release: ReleaseTarget, path: str,
             problems: list[Problem]) -> dict[str, VolumeSpec]:
    out = {}
    for name, vol in release.volumes.items():
        if not NAME_RE.match(name):
            problems.append(Problem(f"{path}.volumes.{name}", "invalid volume name"))
            continue
        opts = vol.driver_opts
        if vol.external or (vol.driver or "local") not in ("local", "default"):
            problems.append(Problem(f"{path}.volumes.{name}", "only local volumes made by the"
                                    " release are supported (balena refuses external volumes"
                                    " and other drivers)"))
            continue
        if _binds_host(opts):
            problems.append(Problem(f"{path}.volumes.{name}.driver_opts", "a volume that binds"
                                    " a host path (o: bind, type: none, device) is refused:"
                                    " host paths are granted by feature labels only"))
            continue
        out[name] = VolumeSpec(app_uuid=app_uuid, app_id=app_id, name=name,
                               driver="local", driver_opts=vol.driver_opts,
                               labels=vol.labels)
    return out


def _binds_host(opts: dict[str, str]) -> bool:
    """Whether local-driver options mount something of the host: a bind (`o: bind`,
    `type: none`) or a host device or path (`device: /...`); tmpfs and network filesystems
    are not."""
    o = {part.strip() for part in opts.get("o", "").split(",")}
    kind = opts.get("type", "")
    return bool(o & {"bind", "rbind"}) or kind in ("none", "bind") or (
        opts.get("device", "").startswith("/") and kind != "tmpfs")


def _check_depends(*, release: ReleaseTarget, path: str, problems: list[Problem]) -> None:
    """Every `depends_on` names a service of the release, and there is no cycle."""
    graph: dict[str, list[str]] = {}
    for name, svc in release.services.items():
        deps = svc.composition.get("depends_on") or []
        graph[name] = [str(d) for d in deps] if isinstance(deps, list | dict) else []
        for dep in graph[name]:
            if dep not in release.services:
                problems.append(Problem(f"{path}.services.{name}.composition.depends_on",
                                        f"depends on unknown service {dep!r}"))
    state: dict[str, int] = {}
    for root in graph:
        stack: list[tuple[str, int]] = [(root, 0)]
        trail: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                if state.get(node) == 2:
                    continue
                state[node] = 1
                trail.append(node)
            nexts = [d for d in graph.get(node, []) if d in graph]
            if i < len(nexts):
                stack.append((node, i + 1))
                dep = nexts[i]
                if state.get(dep) == 1:
                    cycle = [*trail[trail.index(dep):], dep]
                    problems.append(Problem(f"{path}.services.{node}.composition.depends_on",
                                            "depends_on cycle: " + " -> ".join(cycle)))
                    return
                if state.get(dep) != 2:
                    stack.append((dep, 0))
            else:
                state[node] = 2
                trail.pop()


def _service(*, name: str, svc: ServiceTarget, composition: dict[str, Any], app: AppTarget,
             app_uuid: str, commit: str, release: ReleaseTarget,
             networks: dict[str, NetworkSpec], volumes: dict[str, VolumeSpec],
             device: DeviceContext, path: str, problems: list[Problem]) -> ServiceSpec | None:
    before = len(problems)
    if not NAME_RE.match(name) or len(name) > MAX_STR:
        problems.append(Problem(path, "invalid service name"))
    if not IMAGE_RE.match(svc.image):
        problems.append(Problem(f"{path}.image", "not an image reference"))
    parsed, found = parse_service(composition=composition, path=f"{path}.composition")
    problems.extend(found)
    for key in svc.environment:
        if not ENV_RE.match(key):
            problems.append(Problem(f"{path}.environment.{key}", "invalid variable name"))
    user_labels = {naming.normalise_label_name(k): v for k, v in
                   {**parsed.fields.get("labels", {}), **svc.labels}.items()}
    for key in user_labels:
        if not LABEL_RE.match(key) or len(key) > MAX_STR:
            problems.append(Problem(f"{path}.labels.{key}", "invalid label name"))
    features = feat.enabled(user_labels)
    for feature in sorted(features):
        why = feat.refused(feature, device)
        if why:
            problems.append(Problem(f"{path}.labels.{naming.FEATURE_PREFIX}{feature}", why))
    if device.check_contracts and len(problems) == before:
        unmet = feat.unmet_contract(user_labels, device)
        if unmet and feat.truthy(user_labels.get(feat.OPTIONAL, "")):
            feat.warn_once(f"optional service {name!r} skipped: {unmet}")
            return None
        if unmet:
            problems.append(Problem(f"{path}.labels", f"contract not met: {unmet}"))
    args = dict(parsed=parsed, features=features, app_id=app.id, service=name,
                volumes=volumes, device=device, path=path,
                refused=frozenset(release.volumes) - set(volumes))
    mounted = mounts(**args, problems=problems)  # type: ignore[arg-type]
    mode, attached = network_mode(parsed=parsed, service=name, services=set(release.services),
                                  networks=networks, path=path, problems=problems)
    namespace_modes(parsed=parsed, service=name, services=set(release.services), path=path,
                    problems=problems)
    if len(problems) > before:
        return None
    user_env = {**parsed.fields.get("environment", {}), **svc.environment}
    env = {**_injected_env(app=app, app_uuid=app_uuid, service=name, device=device),
           **feature_env(features), **_api_env(features, mode, app_uuid, device), **user_env}
    labels = {**user_labels, naming.SUPERVISED: "true", naming.APP_ID: str(app.id),
              naming.APP_UUID: app_uuid, naming.SERVICE_ID: str(svc.id),
              naming.SERVICE_NAME: name, naming.SCOPE: device.scope}
    fields = {k: v for k, v in parsed.fields.items() if k not in ("environment", "labels")}
    fields.pop("image", None)
    fields.setdefault("tty", True)  # balena's default
    try:
        spec = ServiceSpec(
            app_id=app.id, app_uuid=app_uuid, app_name=app.name, service_name=name,
            service_id=svc.id, image_id=svc.image_id, release_id=release.id, commit=commit,
            running=svc.running, image=svc.image, environment=env, labels=labels,
            mounts=tuple(mounted), networks=attached, network_mode=mode,
            injected_env=frozenset(k for k in env if k not in user_env), **fields,
        )
    except ValueError as exc:
        problems.append(Problem(path, str(exc)))
        return None
    legacy = _v1_hash(spec, composition=composition, user_env=user_env, args=args,
                      app=app, app_uuid=app_uuid, mode=mode, parsed_tty=parsed.fields.get("tty"))
    return spec.model_copy(update={"legacy_hash": legacy})


def _api_env(features: set[str], mode: str, app_uuid: str,
             device: DeviceContext) -> dict[str, str]:
    env: dict[str, str] = {}
    if "supervisor-api" in features:
        host = "127.0.0.1" if mode == "host" else device.supervisor_api_host_for_bridge
        for prefix in ("BALENA_", "RESIN_"):
            env[f"{prefix}SUPERVISOR_API_KEY"] = device.supervisor_api_keys.get(app_uuid, "")
            env[f"{prefix}SUPERVISOR_PORT"] = str(device.supervisor_api_port)
            env[f"{prefix}SUPERVISOR_HOST"] = host
            env[f"{prefix}SUPERVISOR_ADDRESS"] = f"http://{host}:{device.supervisor_api_port}"
    if "balena-api" in features:
        for prefix in ("BALENA_", "RESIN_"):
            env[f"{prefix}API_KEY"] = device.device_api_key
            env[f"{prefix}API_URL"] = device.api_endpoint
    return env


def _v1_hash(spec: ServiceSpec, *, composition: dict[str, Any], user_env: dict[str, str],
             args: dict[str, Any], app: AppTarget, app_uuid: str, mode: str,
             parsed_tty: Any) -> str:
    """The hash edgefleet's hash version 1 gave this service, from what that code resolved."""
    raw_env = composition.get("environment")
    nulls = {str(k) for k, v in raw_env.items() if v is None} if isinstance(raw_env, dict) \
        else set()
    env = {k: v for k, v in _injected_env(app=app, app_uuid=app_uuid,
                                          service=spec.service_name,
                                          device=args["device"]).items()
           if k not in V2_ONLY_ENV}
    features = args["features"]
    env.update(feature_env(features, v1=True))
    env.update(_api_env(features, mode, app_uuid, args["device"]))
    env.update({k: v for k, v in user_env.items() if k not in nulls})
    try:
        v1_ports = [p.model_dump(mode="json", exclude={"host_port_end"})
                    for p in ports(composition.get("ports"), v1=True)]
    except (ValueError, TypeError, KeyError):
        return ""
    v1_mounts = mounts(**args, problems=[], v1=True)
    return config_hash_v1(spec, environment=env, mounts=v1_mounts, tty=parsed_tty is True,
                          ports=v1_ports)


def _injected_env(*, app: AppTarget, app_uuid: str, service: str,
                  device: DeviceContext) -> dict[str, str]:
    env: dict[str, str] = {}
    values = {
        "APP_ID": str(app.id), "APP_UUID": app_uuid, "APP_NAME": app.name,
        "SERVICE_NAME": service, "DEVICE_UUID": device.uuid, "DEVICE_TYPE": device.device_type,
        "DEVICE_ARCH": device.arch, "HOST_OS_VERSION": device.os_version,
        "SUPERVISOR_VERSION": device.supervisor_version,
        "APP_LOCK_PATH": "/tmp/balena/updates.lock",
    }
    for prefix in ("RESIN_", "BALENA_"):
        env.update({prefix + k: v for k, v in values.items()})
    env["BALENA"] = "1"
    env["RESIN"] = "1"
    env["BALENA_SERVICE_HANDOVER_COMPLETE_PATH"] = "/tmp/balena/handover-complete"
    env["RESIN_SERVICE_KILL_ME_PATH"] = "/tmp/balena/handover-complete"
    env["USER"] = "root"
    return env
