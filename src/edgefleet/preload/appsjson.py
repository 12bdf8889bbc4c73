"""apps.json for preloaded devices: validate (compat §2), merge, and place it where the
supervisor reads it: the root of the data partition, beside the engine's data root
(`<partition>/docker` → `<partition>/apps.json`, as on balenaOS's /mnt/data)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from edgefleet.preload.errors import PreloadError

if TYPE_CHECKING:  # imported when used: the CLI starts faster without pydantic
    from edgefleet.model import formats

APPS_JSON = "apps.json"


def apps_json_path(*, data_root: Path) -> Path:
    """Where apps.json goes for an engine data root: the data partition's root (its parent)."""
    return data_root.resolve().parent / APPS_JSON


def load_apps(*, path: Path) -> formats.AppsJson:
    """Read and validate an apps.json file; a clear error naming what is wrong."""
    from edgefleet.model import formats
    from edgefleet.model.errors import InvalidInput

    try:
        text = path.read_text()
    except OSError as exc:
        raise PreloadError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise PreloadError(f"{path} is not JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        return formats.parse_apps_json(data=data)
    except InvalidInput as exc:
        raise PreloadError(f"{path}: {exc}") from None


def merge_apps(*, existing: formats.AppsJson, new: formats.AppsJson) -> formats.AppsJson:
    """Apps of both (the new file wins for an app uuid in both); config merged the same way;
    pinDevice when either asks for it."""
    from edgefleet.model import formats
    from edgefleet.model.errors import InvalidInput

    data = existing.to_wire()
    incoming = new.to_wire()
    data["apps"].update(incoming["apps"])
    data["config"].update(incoming["config"])
    data["pinDevice"] = bool(existing.pin_device or new.pin_device)
    try:
        return formats.parse_apps_json(data=data)
    except InvalidInput as exc:
        raise PreloadError(f"the merged apps.json does not validate: {exc}") from None


def service_images(apps: formats.AppsJson) -> dict[str, str]:
    """`<app>/<service>` → image ref, for every service of every release."""
    return {f"{app.name or uuid}/{name}": svc.image
            for uuid, app in apps.apps.items() for rel in app.releases.values()
            for name, svc in rel.services.items()}


def write_apps(*, path: Path, apps: formats.AppsJson) -> None:
    """Write atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(apps.to_wire(), indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
