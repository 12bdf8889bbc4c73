"""Build desired states for planner tests without an engine."""

from __future__ import annotations

import zlib
from typing import Any

from edgefleet.model import formats
from edgefleet.model.context import DeviceContext
from edgefleet.model.resolve import desired_state
from edgefleet.model.service import DesiredState

DEVICE = DeviceContext(uuid="dev", lock_root="/tmp/l", scope="default")


def desired(apps: dict[str, dict[str, Any]], *, commit: str = "c1", release_id: int = 1,
            volumes: dict[str, Any] | None = None,
            networks: dict[str, Any] | None = None) -> DesiredState:
    """apps: app uuid → {service name → composition (plus optional 'image'/'env'/'running')}."""
    doc_apps = {}
    for n, (uuid, services) in enumerate(sorted(apps.items()), start=1):
        svcs = {}
        for name, comp in sorted(services.items()):
            comp = dict(comp)
            i = zlib.crc32(name.encode()) % 1000  # stable ids, as the cloud keeps them
            svcs[name] = {"id": i, "image_id": i, "image": comp.pop("image", f"reg/{name}:1"),
                          "environment": comp.pop("env", {}),
                          "running": comp.pop("running", True), "composition": comp}
        doc_apps[uuid] = {"id": n, "name": uuid, "releases": {commit: {
            "id": release_id, "services": svcs, "volumes": volumes or {},
            "networks": networks or {}}}}
    target = formats.parse_v3(data={"dev": {"apps": doc_apps}})
    return desired_state(target=target, device=DEVICE)


def registry_of(state: DesiredState) -> set[str]:
    return {s.image for a in state.apps.values() for s in a.services.values()}
