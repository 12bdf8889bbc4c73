"""Reading target state in its three formats (v3, apps.json, v2 local) and compose files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgefleet.model.context import DeviceContext
from edgefleet.model.errors import InvalidInput, Problem
from edgefleet.model.naming import local_image_name
from edgefleet.model.resolve import desired_state
from edgefleet.model.target import AppTarget, DeviceTarget, ReleaseTarget, TargetState


def _pydantic_problems(exc: ValidationError, prefix: str = "") -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        out.append(Problem(f"{prefix}{loc}" if loc else prefix.rstrip("."), err["msg"]))
    return out


def validate(*, target: TargetState) -> TargetState:
    """Run full resolution once so a bad composition is rejected at the door (contracts and
    host features are for the device that runs it to judge)."""
    from edgefleet.model.features import GRANTS

    desired_state(target=target, device=DeviceContext(
        uuid=target.device_uuid, check_contracts=False, host_features=frozenset(GRANTS)))
    return target


def parse_v3(*, data: object, device_uuid: str | None = None) -> TargetState:
    """A v3 target document `{<uuid>: {name, config, apps}}` → a validated TargetState."""
    if not isinstance(data, dict) or not data:
        raise InvalidInput("target state", [Problem("", "expected {<device uuid>: {...}}")])
    if device_uuid is None:
        if len(data) != 1:
            raise InvalidInput("target state", [Problem("", "expected exactly one device")])
        device_uuid = str(next(iter(data)))
    if device_uuid not in data:
        raise InvalidInput("target state",
                           [Problem("", f"no entry for this device ({device_uuid})")])
    try:
        device = DeviceTarget.model_validate(data[device_uuid])
    except ValidationError as exc:
        raise InvalidInput("target state", _pydantic_problems(exc)) from None
    return validate(target=TargetState(device_uuid=device_uuid, device=device))


class AppsJson(BaseModel):
    """apps.json at the root of the data partition (preload, compat §2)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    config: dict[str, str] = Field(default_factory=dict)
    apps: dict[str, AppTarget] = Field(default_factory=dict)
    pin_device: bool = Field(default=False, alias="pinDevice")

    @property
    def empty(self) -> bool:
        """`{}`: nothing to preload (what the file holds after it has been loaded)."""
        return not self.apps

    def to_target(self, *, device_uuid: str, device_name: str = "") -> TargetState:
        """The target state this file asks for."""
        return TargetState(
            device_uuid=device_uuid,
            device=DeviceTarget(name=device_name, config=self.config, apps=self.apps),
        )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=False)


def _migrate_v12(data: object) -> object:
    """supervisor v12's apps.json (`apps.<appId>` with name, commit, releaseId and services,
    a top-level device `name`) → the current form; anything else is returned as it is."""
    if not isinstance(data, dict) or not isinstance(data.get("apps"), dict):
        return data
    apps = data["apps"]
    if not apps or not all(isinstance(a, dict) and "releases" not in a and "id" not in a
                           for a in apps.values()):
        return data
    converted, problems = _v2_apps(apps, path="apps")
    if problems:
        raise InvalidInput("apps.json", problems)
    return {**{k: v for k, v in data.items() if k != "name"}, "apps": converted}


def parse_apps_json(*, data: object) -> AppsJson:
    """Validate an apps.json document (each app needs a non-empty releases map); supervisor
    v12's format is migrated first."""
    data = _migrate_v12(data)
    try:
        parsed = AppsJson.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("apps.json", _pydantic_problems(exc)) from None
    problems = [Problem(f"apps.{uuid}.releases", "must contain a release")
                for uuid, app in parsed.apps.items() if not app.releases]
    if problems:
        raise InvalidInput("apps.json", problems)
    try:
        validate(target=parsed.to_target(device_uuid="preload"))
    except InvalidInput as exc:
        raise InvalidInput("apps.json", exc.problems) from None
    return parsed


def _v2_apps(raw: object, *, path: str) -> tuple[dict[str, Any], list[Problem]]:
    """balena's v2 apps `{"<appId>": {name, commit, releaseId, services: {"<serviceId>":
    {...}}}}` → v3 apps keyed by app id (v2 has no app uuids)."""
    problems: list[Problem] = []
    apps: dict[str, Any] = {}
    if not isinstance(raw, dict):
        return {}, [Problem(path, "expected a mapping of apps")]
    for app_id, app in raw.items():
        where = f"{path}.{app_id}"
        if not str(app_id).isdigit() or not isinstance(app, dict):
            problems.append(Problem(where, "app ids must be numeric and apps mappings"))
            continue
        services: dict[str, Any] = {}
        svcs = app.get("services") or {}
        for sid, svc in (svcs.items() if isinstance(svcs, dict) else []):
            if not isinstance(svc, dict):
                problems.append(Problem(f"{where}.services.{sid}", "expected a mapping"))
                continue
            name = str(svc.get("serviceName") or sid)
            composition = {k: v for k, v in svc.items() if k not in (
                "serviceName", "serviceId", "imageId", "running", "environment",
                "labels", "contract", "releaseId", "commit", "appId", "imageName",
                "appUuid", "serviceUuid")}
            services[name] = {
                "id": svc.get("serviceId", sid), "image_id": svc.get("imageId", sid),
                "image": svc.get("image") or local_image_name(name),
                "environment": svc.get("environment") or {}, "labels": svc.get("labels") or {},
                "running": svc.get("running", True), "composition": composition,
            }
        commit = str(app.get("commit") or "localrelease")
        apps[str(app_id)] = {
            "id": int(app_id), "name": app.get("name", ""),
            "releases": {commit: {"id": app.get("releaseId") or 1, "services": services,
                                  "volumes": app.get("volumes") or {},
                                  "networks": app.get("networks") or {}}},
        }
    return apps, problems


def parse_v2_local(*, data: object, device_uuid: str) -> TargetState:
    """balena CLI's v2 local target `{local: {name, config, apps: {"<appId>": ...}}}` → v3;
    an empty body `{}` is an empty target, as balena's legacy API takes it."""
    if data == {}:
        data = {"local": {}}
    if not isinstance(data, dict) or not isinstance(data.get("local"), dict):
        raise InvalidInput("local target state", [Problem("local", "expected {local: {...}}")])
    local = data["local"]
    apps, problems = _v2_apps(local.get("apps") or {}, path="local.apps")
    if problems:
        raise InvalidInput("local target state", problems)
    doc = {device_uuid: {"name": local.get("name", ""), "config": local.get("config") or {},
                         "apps": apps}}
    try:
        return parse_v3(data=doc, device_uuid=device_uuid)
    except InvalidInput as exc:
        raise InvalidInput("local target state", exc.problems) from None


def target_to_v2_local(*, target: TargetState) -> dict[str, Any]:
    """A TargetState in balena CLI's v2 local format (numeric app and service keys)."""
    apps: dict[str, Any] = {}
    for app in target.device.apps.values():
        chosen = app.release
        entry: dict[str, Any] = {"name": app.name, "services": {}, "volumes": {},
                                 "networks": {}}
        if chosen:
            commit, rel = chosen
            entry.update(commit=commit, releaseId=rel.id,
                         volumes={k: v.model_dump(mode="json") for k, v in rel.volumes.items()},
                         networks={k: v.model_dump(mode="json")
                                   for k, v in rel.networks.items()})
            for name, svc in rel.services.items():
                entry["services"][str(svc.id)] = {
                    **svc.composition, "environment": svc.environment, "labels": svc.labels,
                    "imageId": svc.image_id, "serviceName": name, "serviceId": svc.id,
                    "image": svc.image, "running": svc.running,
                }
        apps[str(app.id)] = entry
    return {"local": {"name": target.device.name, "config": target.device.config,
                      "apps": apps}}


_VAR = re.compile(
    r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose variable interpolation: `$$` → `$`, `${VAR}`, `${VAR:-default}`, `$VAR`."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1):
                return "$"
            name = m.group(2) or m.group(5)
            if m.group(3) == ":-":
                return variables.get(name) or m.group(4)
            if m.group(3) == "-":
                return variables.get(name, m.group(4))
            return variables.get(name, "")
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    return value


def release_from_compose(*, compose_yaml: str | dict[str, Any], images: Mapping[str, str],
                         release_id: int = 1, first_service_id: int = 1, first_image_id: int = 1,
                         variables: Mapping[str, str] | None = None) -> ReleaseTarget:
    """A docker-compose.yml text (or its expanded document, `compose_file.load_compose`)
    plus each service's image ref → a v3 release (with compose variable interpolation from
    `variables`)."""
    from edgefleet.model.compose_file import load_compose  # not at the top: the running
    from edgefleet.model.compose_push import normalise  # supervisor never parses compose

    doc = load_compose(compose_yaml) if isinstance(compose_yaml, str) else compose_yaml
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise InvalidInput("compose file", [Problem("services", "a compose file needs services")])
    doc = normalise(interpolate(doc, variables or {}))
    problems = [Problem(f"services.{name}", "no image for this service")
                for name in doc["services"] if name not in images]
    allowed_top = {"version", "services", "volumes", "networks"}
    problems += [Problem(str(k), f"unsupported top-level key {k!r} (configs and secrets are"
                         " not supported)") for k in doc if k not in allowed_top]
    for section in ("volumes", "networks"):
        if not isinstance(doc.get(section) or {}, dict):
            problems.append(Problem(section, "expected a mapping"))
    if problems:
        raise InvalidInput("compose file", problems)
    services = {}
    for i, (name, conf) in enumerate(doc["services"].items()):
        if conf is not None and not isinstance(conf, dict):
            raise InvalidInput("compose file", [Problem(f"services.{name}",
                                                        "a service must be a mapping")])
        # `build` stays on the server (its args may be secrets). A compose service is never
        # empty (it keeps `image`, or gets it): the default composition (privileged, host
        # network) is only for a release without a compose file (`{}`)
        composition = {k: v for k, v in (conf or {}).items() if k != "build"}
        if conf and not composition:
            composition = {"image": images[name]}
        services[name] = {"id": first_service_id + i, "image_id": first_image_id + i,
                          "image": images[name], "composition": composition}
    data = {"id": release_id, "services": services,
            "volumes": {k: v or {} for k, v in (doc.get("volumes") or {}).items()},
            "networks": {k: v or {} for k, v in (doc.get("networks") or {}).items()}}
    try:
        return ReleaseTarget.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("compose file", _pydantic_problems(exc)) from None
