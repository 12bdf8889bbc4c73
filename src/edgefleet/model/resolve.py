"""Target resolution: a v3 `TargetState` → a `DesiredState` of fully resolved `ServiceSpec`s.

Applies compose normalisation, compat §2 validation, default composition for single-service
apps, injected environment, supervisor labels, the lock-dir bind and feature-label grants.
Raises `InvalidInput` listing every problem with its field path; never returns half a state.
"""

from __future__ import annotations

import re
from typing import Any

from edgefleet.model import naming
from edgefleet.model.compose import ParsedService, parse_service
from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput, Problem
from edgefleet.model.service import (
    AppSpec,
    DesiredState,
    IpamConfig,
    Mount,
    NetworkAttachment,
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

SINGLE_SERVICE_COMPOSITION: dict[str, Any] = {
    "privileged": True,
    "network_mode": "host",
    "restart": "always",
    "volumes": ["resin-data:/data"],
}

# feature label → (binds (source, target, read_only), env)
FEATURE_GRANTS: dict[str, tuple[tuple[tuple[str, str, bool], ...], dict[str, str]]] = {
    "supervisor-api": ((), {}),
    "balena-socket": ((("@socket", "/var/run/balena.sock", False),),
                      {"DOCKER_HOST": "unix:///var/run/balena.sock"}),
    "dbus": ((("/run/dbus", "/host/run/dbus", False),),
             {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/host/run/dbus/system_bus_socket"}),
    "sysfs": ((("/sys", "/sys", False),), {}),
    "procfs": ((("/proc", "/proc", False),), {}),
    "kernel-modules": ((("/lib/modules", "/lib/modules", False),), {}),
    "firmware": ((("/lib/firmware", "/lib/firmware", False),), {}),
    "journal-logs": ((("/var/log/journal", "/var/log/journal", True),
                      ("/run/log/journal", "/run/log/journal", True),
                      ("/etc/machine-id", "/etc/machine-id", True)), {}),
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
    for name, svc in release.services.items():
        deps = svc.composition.get("depends_on") or []
        for dep in deps if isinstance(deps, list | dict) else []:
            if dep not in release.services:
                problems.append(Problem(f"{rpath}.services.{name}.composition.depends_on",
                                        f"depends on unknown service {dep!r}"))
        mode = str(svc.composition.get("network_mode") or "")
        if mode.startswith("service:") and mode[8:] not in release.services:
            problems.append(Problem(f"{rpath}.services.{name}.composition.network_mode",
                                    f"unknown service {mode[8:]!r}"))
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
        out[name] = NetworkSpec(
            app_uuid=app_uuid, app_id=app_id, name=name, driver=net.driver or "bridge",
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
        out[name] = VolumeSpec(app_uuid=app_uuid, app_id=app_id, name=name,
                               driver=vol.driver or "local", driver_opts=vol.driver_opts,
                               labels=vol.labels)
    return out


def _service(*, name: str, svc: ServiceTarget, composition: dict[str, Any], app: AppTarget,
             app_uuid: str, commit: str, release: ReleaseTarget,
             networks: dict[str, NetworkSpec], volumes: dict[str, VolumeSpec],
             device: DeviceContext, path: str, problems: list[Problem]) -> ServiceSpec | None:
    before = len(problems)
    if not NAME_RE.match(name) or len(name) > MAX_STR:
        problems.append(Problem(path, "invalid service name"))
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
    features = {k[len(naming.FEATURE_PREFIX):] for k, v in user_labels.items()
                if k.startswith(naming.FEATURE_PREFIX) and v not in ("0", "false", "")}
    for feature in sorted(features):
        if feature not in FEATURE_GRANTS or feature not in device.host_features:
            problems.append(Problem(f"{path}.labels.{naming.FEATURE_PREFIX}{feature}",
                                    f"feature {feature!r} is not supported on this host"))
    mounts, env_grants = _mounts(parsed=parsed, features=features, app_id=app.id, service=name,
                                 volumes=volumes, device=device, path=path, problems=problems)
    mode, attached = _network_mode(parsed=parsed, service=name, networks=networks, path=path,
                                   problems=problems)
    if len(problems) > before:
        return None
    env = _injected_env(app=app, app_uuid=app_uuid, service=name, device=device)
    env.update(env_grants)
    if "supervisor-api" in features:
        host = "127.0.0.1" if mode == "host" else device.supervisor_api_host_for_bridge
        for prefix in ("BALENA_", "RESIN_"):
            env[f"{prefix}SUPERVISOR_API_KEY"] = device.supervisor_api_keys.get(app_uuid, "")
            env[f"{prefix}SUPERVISOR_PORT"] = str(device.supervisor_api_port)
            env[f"{prefix}SUPERVISOR_HOST"] = host
            env[f"{prefix}SUPERVISOR_ADDRESS"] = f"http://{host}:{device.supervisor_api_port}"
    env.update(parsed.fields.get("environment", {}))
    env.update(svc.environment)
    labels = {**user_labels, naming.SUPERVISED: "true", naming.APP_ID: str(app.id),
              naming.APP_UUID: app_uuid, naming.SERVICE_ID: str(svc.id),
              naming.SERVICE_NAME: name, naming.SCOPE: device.scope}
    fields = {k: v for k, v in parsed.fields.items() if k not in ("environment", "labels")}
    fields.pop("image", None)
    try:
        return ServiceSpec(
            app_id=app.id, app_uuid=app_uuid, app_name=app.name, service_name=name,
            service_id=svc.id, image_id=svc.image_id, release_id=release.id, commit=commit,
            running=svc.running, image=svc.image, environment=env, labels=labels,
            mounts=tuple(mounts), networks=attached, network_mode=mode, **fields,
        )
    except ValueError as exc:
        problems.append(Problem(path, str(exc)))
        return None


def _injected_env(*, app: AppTarget, app_uuid: str, service: str,
                  device: DeviceContext) -> dict[str, str]:
    env: dict[str, str] = {}
    values = {
        "APP_ID": str(app.id), "APP_UUID": app_uuid, "APP_NAME": app.name,
        "SERVICE_NAME": service, "DEVICE_UUID": device.uuid, "DEVICE_TYPE": device.device_type,
        "DEVICE_ARCH": device.arch, "HOST_OS_VERSION": device.os_version,
        "SUPERVISOR_VERSION": device.supervisor_version,
    }
    for prefix in ("RESIN_", "BALENA_"):
        env.update({prefix + k: v for k, v in values.items()})
    env["BALENA"] = "1"
    env["RESIN"] = "1"
    env["BALENA_APP_LOCK_PATH"] = "/tmp/balena/updates.lock"
    env["BALENA_SERVICE_HANDOVER_COMPLETE_PATH"] = "/tmp/balena/handover-complete"
    return env


def _mounts(*, parsed: ParsedService, features: set[str], app_id: int, service: str,
            volumes: dict[str, VolumeSpec], device: DeviceContext, path: str,
            problems: list[Problem]) -> tuple[list[Mount], dict[str, str]]:
    mounts: list[Mount] = []
    granted: dict[str, tuple[str, bool]] = {}
    env: dict[str, str] = {}
    for feature in sorted(features):
        binds, fenv = FEATURE_GRANTS.get(feature, ((), {}))
        env.update(fenv)
        for source, target, ro in binds:
            src = device.engine_socket if source == "@socket" else source
            granted[src] = (target, ro)
    for i, vol in enumerate(parsed.volumes):
        where = f"{path}.composition.volumes[{i}]"
        if vol.type == "volume":
            if vol.source not in volumes:
                problems.append(Problem(where, f"volume {vol.source!r} is not declared in the"
                                        " top-level volumes of the release"))
                continue
            mounts.append(Mount(type="volume", source=volumes[vol.source].engine_name,
                                target=vol.target, read_only=vol.read_only))
        elif vol.type == "tmpfs":
            mounts.append(Mount(type="tmpfs", target=vol.target))
        elif vol.source in granted:
            granted.pop(vol.source)
            mounts.append(Mount(type="bind", source=vol.source, target=vol.target,
                                read_only=vol.read_only))
        else:
            problems.append(Problem(where, f"bind mount of host path {vol.source!r} is refused"
                                    " (only named volumes; feature labels grant host paths)"))
    for source, (target, ro) in sorted(granted.items()):
        mounts.append(Mount(type="bind", source=source, target=target, read_only=ro))
    lock_dir = f"{device.lock_root}/{app_id}/{service}"
    mounts.append(Mount(type="bind", source=lock_dir, target="/tmp/balena"))
    return mounts, env


def _network_mode(*, parsed: ParsedService, service: str, networks: dict[str, NetworkSpec],
                  path: str, problems: list[Problem]) -> tuple[str, dict[str, NetworkAttachment]]:
    mode = parsed.network_mode
    if mode in ("host", "none", "bridge") or (mode or "").startswith(("service:", "container:")):
        return str(mode), {}
    if mode:
        problems.append(Problem(f"{path}.composition.network_mode",
                                f"unsupported network_mode {mode!r}"))
        return "", {}
    wanted = parsed.networks or {"default": {}}
    attached: dict[str, NetworkAttachment] = {}
    for name, conf in wanted.items():
        if name not in networks:
            problems.append(Problem(f"{path}.composition.networks.{name}",
                                    f"network {name!r} is not declared in the release"))
            continue
        aliases = tuple(dict.fromkeys((service, *conf.get("aliases", ()))))
        attached[networks[name].engine_name] = NetworkAttachment(
            aliases=aliases, ipv4_address=conf.get("ipv4_address"),
            ipv6_address=conf.get("ipv6_address"))
    first = next(iter(attached), "")
    return first, attached
