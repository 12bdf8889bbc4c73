"""`preload release` from a compose project built locally: build its images on this machine's
engine, write the apps.json of that release, extract the images from the engine's data root and
inject them (with apps.json) into the target."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgefleet.engine import build
from edgefleet.engine.errors import EngineError
from edgefleet.preload.errors import PreloadError, Progress
from edgefleet.preload.inject import InjectOptions, InjectResult, inject

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")


@dataclass(frozen=True)
class LocalRelease:
    """A compose project to build here and preload as release `release` of `fleet`."""

    fleet: str
    project: Path
    socket: str = "/var/run/docker.sock"
    release: str | None = None
    app_id: int = 1
    pin: bool = False


@dataclass(frozen=True)
class BuiltRelease:
    """The release's commit, app uuid, apps.json document and image refs."""

    commit: str
    app_uuid: str
    apps_json: dict[str, Any]
    images: dict[str, str]


def app_uuid_for(fleet: str) -> str:
    """A stable app uuid for a fleet name (32 hex, like balena's)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"edgefleet:fleet:{fleet}").hex


def _compose(project: Path) -> tuple[Path, dict[str, Any]]:
    for name in COMPOSE_FILES:
        if (project / name).is_file():
            text = (project / name).read_text()
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise PreloadError(f"{project / name}: {str(exc).splitlines()[0]}") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
                raise PreloadError(f"{project / name}: a compose file needs services")
            return project / name, doc
    if (project / "Dockerfile").is_file():
        return project / "Dockerfile", {"services": {"main": {"build": "."}}}
    raise PreloadError(f"{project} has no compose file ({', '.join(COMPOSE_FILES)}) and no "
                       "Dockerfile")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def build_release(*, spec: LocalRelease, on_line: Callable[[str], None] | None = None
                  ) -> BuiltRelease:
    """Build every service with `build:` (tagged `<fleet>/<service>:<commit>`); services with
    only `image:` must already be on the engine. Returns the validated apps.json."""
    from edgefleet.model import formats
    from edgefleet.model.errors import InvalidInput

    source, doc = _compose(spec.project)
    tmp_tag = f"edgefleet-preload-{uuid.uuid4().hex[:8]}"
    built: dict[str, str] = {}
    try:
        for name, conf in doc["services"].items():
            conf = conf or {}
            if "build" in conf:
                b = conf["build"] if isinstance(conf["build"], dict) else {"context": conf["build"]}
                context = (spec.project / str(b.get("context", "."))).resolve()
                if not context.is_dir():
                    raise PreloadError(f"services.{name}.build: no directory {context}")
                built[name] = build.build_image(
                    socket=spec.socket, context=build.context_tar(directory=context),
                    tag=f"{tmp_tag}/{_slug(name)}:build",
                    dockerfile=str(b.get("dockerfile", "Dockerfile")),
                    buildargs={str(k): str(v) for k, v in (b.get("args") or {}).items()},
                    on_line=on_line)
            elif "image" not in conf:
                raise PreloadError(f"services.{name}: needs build or image")
        ids = "".join(f"{k}={v}" for k, v in sorted(built.items()))
        commit = spec.release or hashlib.sha256(
            (source.read_text() + ids).encode()).hexdigest()[:32]
        refs: dict[str, str] = {}
        for name, conf in doc["services"].items():
            if name in built:
                refs[name] = f"{_slug(spec.fleet)}/{_slug(name)}:{_slug(commit)}"
                build.tag_image(socket=spec.socket, image=built[name], ref=refs[name])
            else:
                refs[name] = str((conf or {})["image"])
    except EngineError as exc:
        raise PreloadError(f"building {spec.project}: {exc}") from None
    finally:
        for name in built:
            build.untag(socket=spec.socket, ref=f"{tmp_tag}/{_slug(name)}:build")
    compose_text = yaml.safe_dump(doc) if source.name == "Dockerfile" else source.read_text()
    try:
        release = formats.release_from_compose(compose_yaml=compose_text, images=refs)
        app_uuid = app_uuid_for(spec.fleet)
        apps = {"config": {}, "pinDevice": spec.pin, "apps": {app_uuid: {
            "id": spec.app_id, "name": spec.fleet, "class": "fleet",
            "releases": {commit: release.model_dump(mode="json", by_alias=True)}}}}
        formats.parse_apps_json(data=apps)
    except InvalidInput as exc:
        raise PreloadError(f"{source}: {exc}") from None
    return BuiltRelease(commit=commit, app_uuid=app_uuid, apps_json=apps, images=refs)


def preload_local_release(*, spec: LocalRelease, data_root: Path, verify: bool = True,
                          merge: bool = False, progress: Progress | None = None,
                          on_line: Callable[[str], None] | None = None
                          ) -> tuple[BuiltRelease, InjectResult]:
    """Build, write apps.json, copy the images from the local engine's data root into the
    target's (extract + inject in one step, `preload copy`)."""
    try:
        source_root = build.data_root(socket=spec.socket)
    except EngineError as exc:
        raise PreloadError(str(exc)) from None
    built = build_release(spec=spec, on_line=on_line)
    work = Path(tempfile.mkdtemp(prefix="edgefleet-preload-"))
    try:
        apps_path = work / "apps.json"
        apps_path.write_text(json.dumps(built.apps_json, indent=2))
        result = inject(options=InjectOptions(  # straight from the engine's root: no bundle
            data_root=data_root, from_root=source_root,
            refs=tuple(sorted(set(built.images.values()))), apps=apps_path, merge=merge,
            verify=verify), progress=progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return built, result
