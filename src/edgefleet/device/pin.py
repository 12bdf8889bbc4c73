"""pinDevice (compat §2): what a preloaded device remembers so that, once it has joined its
fleet, it can pin itself on the fleet server to the release apps.json gave it (the cloud link
asks the server; see `link.CloudLink.pin_preloaded`). Store-only: no HTTP here."""

from __future__ import annotations

import json
from dataclasses import dataclass

from edgefleet.device.store import Store
from edgefleet.model.target import TargetState

PIN_KEY = "pinDevice"
"""Store key: "true" while the pin is still to be made on the server."""
PIN_RELEASE_KEY = "pinDeviceRelease"
"""Store key: `{"app": <app uuid>, "commit": <commit>}` of the preloaded release."""


@dataclass(frozen=True)
class PreloadPin:
    """The preloaded release a device is to pin itself to."""

    app: str
    commit: str


def remember_pin(*, store: Store, target: TargetState) -> PreloadPin | None:
    """At apps.json load: record the release to pin to (first app with a release), then the
    flag. None when apps.json holds no release (nothing to pin to; no flag set)."""
    for app_uuid, app in target.device.apps.items():
        found = app.release
        if found is not None:
            pin = PreloadPin(app=app_uuid, commit=found[0])
            store.set_config(key=PIN_RELEASE_KEY,
                             value=json.dumps({"app": pin.app, "commit": pin.commit}))
            store.set_config(key=PIN_KEY, value="true")
            return pin
    return None


def pending_pin(*, store: Store) -> PreloadPin | None:
    """The pin still to be made, or None. A store written before the release was recorded
    (flag alone) falls back to the target, if it still is the one apps.json set."""
    if store.get_config(key=PIN_KEY) != "true":
        return None
    try:
        raw = json.loads(store.get_config(key=PIN_RELEASE_KEY) or "null")
        if isinstance(raw, dict) and raw.get("commit"):
            return PreloadPin(app=str(raw.get("app") or ""), commit=str(raw["commit"]))
    except ValueError:
        pass
    stored = store.load_target()
    if stored is None or stored.source != "apps.json":
        return None
    for apps in (doc.get("apps") or {} for doc in stored.document.values()
                 if isinstance(doc, dict)):
        for app_uuid, app in apps.items():
            for commit in (app.get("releases") or {}):
                return PreloadPin(app=app_uuid, commit=commit)
    return None


def clear_pin(*, store: Store) -> None:
    """The server accepted the pin, or it can never be made: stop trying."""
    store.set_config(key=PIN_KEY, value="")
