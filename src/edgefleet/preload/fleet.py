"""`preload release` from the fleet server: read a fleet's release (composition, image refs,
fleet variables) over the user API, write the apps.json a device of the fleet would get, pull
the images through a temporary engine unless this machine's engine has them all, then extract
and inject."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from edgefleet.client import ApiError, FleetClient, Login
from edgefleet.engine import build, tempengine
from edgefleet.engine.errors import EngineError
from edgefleet.preload.errors import PreloadError, Progress
from edgefleet.preload.inject import InjectOptions, InjectResult, inject


@dataclass(frozen=True)
class ServerRelease:
    """Which fleet and release to preload, and the server login to read it with."""

    fleet: str
    url: str
    token: str
    release: str | None = None
    socket: str = "/var/run/docker.sock"
    pin: bool = False


def fetch_apps_json(*, spec: ServerRelease) -> tuple[str, dict[str, Any], list[str]]:
    """(commit, apps.json, image refs) of the fleet's release (its current one by default)."""
    from edgefleet.model import formats
    from edgefleet.model.errors import InvalidInput

    client = FleetClient(login=Login(url=spec.url, token=spec.token))
    try:
        fleet = client.fleet(name=spec.fleet)
        commit = spec.release or fleet.get("release")
        if not commit:
            raise PreloadError(f"fleet {spec.fleet} has no successful release yet")
        rel = client.release(commit=commit)
        variables = client.variables(fleet=spec.fleet, device=None)
    except ApiError as exc:
        raise PreloadError(f"fleet server {spec.url}: {exc}") from None
    except httpx.HTTPError as exc:
        raise PreloadError(f"fleet server {spec.url} not reachable: {exc}") from None
    finally:
        client.close()
    if rel.get("fleet") != fleet["name"] or rel.get("status") != "success":
        raise PreloadError(f"release {commit} is not a successful release of {spec.fleet} "
                           f"(fleet {rel.get('fleet')}, status {rel.get('status')})")
    refs = {img["service"]: img["ref"] for img in rel["images"]}
    composition = rel.get("composition") or {}
    if not composition.get("services"):
        composition = {"services": {name: {} for name in refs}}
    try:
        release = formats.release_from_compose(compose_yaml=yaml.safe_dump(composition),
                                               images=refs, release_id=int(rel["id"]))
    except InvalidInput as exc:
        raise PreloadError(f"release {rel['commit']}: {exc}") from None
    doc = release.model_dump(mode="json", by_alias=True, exclude_none=True)
    image_ids = {img["service"]: int(img["image_id"]) for img in rel["images"]}
    # the server's own ids, so the device's first poll finds the same service and image ids
    # (older servers do not send service_id: the numbering of release_from_compose stays)
    service_ids = {img["service"]: int(img["service_id"]) for img in rel["images"]
                   if "service_id" in img}
    env_rows = [v for v in variables if v["kind"] == "env" and v.get("device") is None]
    for name, svc in doc["services"].items():
        svc["image_id"] = image_ids.get(name, svc["image_id"])
        svc["id"] = service_ids.get(name, svc["id"])
        env: dict[str, str] = {}
        for level in ("fleet", "fleet+service"):
            env.update({v["name"]: v["value"] for v in env_rows if v["level"] == level
                        and (level == "fleet" or v.get("service") == name)})
        svc["environment"] = env
    config = {v["name"]: v["value"] for v in variables
              if v["kind"] == "config" and v.get("device") is None}
    apps = {"config": config, "pinDevice": spec.pin, "apps": {fleet["uuid"]: {
        "id": int(fleet["id"]), "name": fleet["name"], "class": "fleet", "is_host": False,
        "releases": {rel["commit"]: doc}}}}
    try:
        formats.parse_apps_json(data=apps)
    except InvalidInput as exc:
        raise PreloadError(f"release {rel['commit']}: {exc}") from None
    return str(rel["commit"]), apps, sorted(set(refs.values()))


def preload_server_release(*, spec: ServerRelease, data_root: Path, verify: bool = True,
                           merge: bool = False, progress: Progress | None = None,
                           on_line: Callable[[str], None] | None = None
                           ) -> tuple[str, list[str], bool, InjectResult]:
    """Fetch, pull where needed, copy (extract + inject in one step). Returns (commit, refs,
    pulled, result)."""
    commit, apps, refs = fetch_apps_json(spec=spec)
    work = Path(tempfile.mkdtemp(prefix="edgefleet-preload-"))
    try:
        with ExitStack() as stack:
            try:
                local = all(tempengine.has_image(socket=spec.socket, ref=r) for r in refs)
            except EngineError:
                local = False
            if local:
                source = build.data_root(socket=spec.socket)
            else:
                engine = stack.enter_context(tempengine.temp_engine(base=work))
                for ref in refs:
                    tempengine.pull(socket=engine.socket, ref=ref, on_line=on_line)
                source = engine.data_root
            (work / "apps.json").write_text(json.dumps(apps, indent=2))
            # straight from the source root (`preload copy`), while a temporary engine's
            # root still exists
            result = inject(options=InjectOptions(
                data_root=data_root, from_root=source, refs=tuple(refs),
                apps=work / "apps.json", merge=merge, verify=verify), progress=progress)
    except EngineError as exc:
        raise PreloadError(f"release {commit}: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return commit, refs, not local, result
