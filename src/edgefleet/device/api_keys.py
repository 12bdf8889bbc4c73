"""Supervisor API keys: one global key and one key per app whose services carry the
`io.balena.features.supervisor-api` label, kept in the store's api_secret table."""

from __future__ import annotations

import secrets
from typing import Any

from edgefleet.device.store import Store
from edgefleet.model import naming
from edgefleet.model.target import TargetState

GLOBAL = ""
"""The app uuid under which the global key is stored."""
SUPERVISOR_API_FEATURE = naming.FEATURE_PREFIX + "supervisor-api"


def new_key() -> str:
    """A fresh random key (256 bits, hex)."""
    return secrets.token_hex(32)


def _label_on(labels: Any) -> bool:
    if isinstance(labels, dict):
        items = [(naming.normalise_label_name(str(k)), str(v)) for k, v in labels.items()]
    elif isinstance(labels, list):
        items = [(naming.normalise_label_name(str(x).split("=", 1)[0]),
                  str(x).split("=", 1)[1] if "=" in str(x) else "") for x in labels]
    else:
        return False
    return any(k == SUPERVISOR_API_FEATURE and v not in ("0", "false") for k, v in items)


def apps_wanting_keys(*, target: TargetState) -> set[str]:
    """App uuids with at least one service labelled io.balena.features.supervisor-api."""
    wanted: set[str] = set()
    for app_uuid, app in target.device.apps.items():
        chosen = app.release
        if chosen is None:
            continue
        for svc in chosen[1].services.values():
            if _label_on(svc.labels) or _label_on(svc.composition.get("labels")):
                wanted.add(app_uuid)
    return wanted


class ApiKeys:
    """Keys by app uuid, cached in memory (every API request checks one)."""

    def __init__(self, *, store: Store) -> None:
        self.store = store
        self._by_app = store.api_keys()
        self._by_key = {k: a for a, k in self._by_app.items()}

    def global_key(self) -> str:
        """The global key, generated (and stored) the first time it is asked for."""
        key = self._by_app.get(GLOBAL)
        return key if key is not None else self._set(GLOBAL, new_key())

    def app_key(self, *, app_uuid: str) -> str | None:
        return self._by_app.get(app_uuid)

    def ensure_app_keys(self, *, app_uuids: set[str]) -> dict[str, str]:
        """A key for each of these apps (created when missing); returns them by app uuid."""
        return {a: self._by_app.get(a) or self._set(a, new_key()) for a in sorted(app_uuids)}

    def regenerate(self, *, app_uuid: str = GLOBAL) -> str:
        """Replace a key (the global one by default); the old one stops working at once."""
        return self._set(app_uuid, new_key())

    def scope_of(self, key: str) -> str | None:
        """GLOBAL for the global key, the app uuid for an app key, None for an unknown key."""
        return self._by_key.get(key)

    def all_keys(self) -> list[str]:
        """Every key (for redaction in diagnostics)."""
        return list(self._by_app.values())

    def _set(self, app_uuid: str, key: str) -> str:
        old = self._by_app.get(app_uuid)
        self.store.set_api_key(app_uuid=app_uuid, key=key)
        if old is not None:
            self._by_key.pop(old, None)
        self._by_app[app_uuid] = key
        self._by_key[key] = app_uuid
        return key
