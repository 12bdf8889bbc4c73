"""A device's v3 target state (compat §2) from its fleet, release and variables."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from edgefleet.server import tables as t


class VarLike(Protocol):
    """A variable row (the ORM row or a cached copy)."""

    @property
    def kind(self) -> str: ...
    @property
    def device_id(self) -> int | None: ...
    @property
    def service(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> str: ...


@dataclass(frozen=True)
class Var:
    """A cached variable."""

    kind: str
    device_id: int | None
    service: str
    name: str
    value: str


@dataclass(frozen=True)
class RenderedTarget:
    """A target document as sent (bytes) and its ETag."""

    body: bytes
    etag: str
    generation: int


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """The columns of a device its target needs."""

    id: int
    uuid: str
    name: str
    fleet_id: int
    pinned_release_id: int | None


@dataclass
class FleetView:
    """What every device of a fleet shares, read once per generation."""

    id: int
    uuid: str
    name: str
    default_release: tuple[str, str] | None
    """(commit, v3 release JSON) the fleet's devices get unless pinned."""
    variables: list[Var]
    devices: dict[int, DeviceRow] = field(default_factory=dict)
    """Every device of the fleet when the view was read (newer ones are read one by one)."""
    with_vars: set[int] = field(default_factory=set)
    """Devices that have variables of their own (rendered in full)."""
    pinned: dict[int, tuple[str, str] | None] = field(default_factory=dict)
    shared: dict[int | None, tuple[str, str]] = field(default_factory=dict)
    """Per release choice (a pin, None = the fleet's): the serialised `apps` and `config` of
    a device without variables of its own."""


def release_for(s: Session, *, fleet: t.Fleet,
                pinned_release_id: int | None = None) -> t.Release | None:
    """The release a device should run: its pin, else the fleet's pin, else the latest
    successful release of the fleet."""
    for rid in (pinned_release_id, fleet.target_release_id):
        if rid is not None:
            rel = s.get(t.Release, rid)
            if rel is not None and rel.status == "success" and rel.fleet_id == fleet.id:
                return rel
    return s.execute(sa.select(t.Release).where(
        t.Release.fleet_id == fleet.id, t.Release.status == "success")
        .order_by(t.Release.id.desc()).limit(1)).scalar()


def variables(s: Session, *, fleet_id: int, device_id: int | None) -> list[t.Variable]:
    """The fleet's variables and (when device_id is given) the device's, fleet ones first."""
    cond: sa.ColumnElement[bool] = t.Variable.device_id.is_(None)
    if device_id is not None:
        cond = sa.or_(cond, t.Variable.device_id == device_id)
    rows = s.execute(sa.select(t.Variable).where(t.Variable.fleet_id == fleet_id, cond)).scalars()
    return sorted(rows, key=lambda v: (v.device_id is not None, v.id))


def merged_config(vars_: Sequence[VarLike]) -> dict[str, str]:
    """Config variables, device values over fleet values."""
    out: dict[str, str] = {}
    for level in (False, True):
        out.update({v.name: v.value for v in vars_
                    if v.kind == "config" and (v.device_id is not None) == level})
    return out


def service_environment(vars_: Sequence[VarLike], *, service: str) -> dict[str, str]:
    """Env for one service, lowest to highest: fleet, fleet+service, device, device+service
    (the image's own env lies below all of these, on the device)."""
    out: dict[str, str] = {}
    for on_device in (False, True):
        for svc in ("", service):
            out.update({v.name: v.value for v in vars_ if v.kind == "env"
                        and (v.device_id is not None) == on_device and v.service == svc})
    return out


def _cached(v: t.Variable) -> Var:
    return Var(v.kind, v.device_id, v.service, v.name, v.value)


def fleet_view(s: Session, *, fleet_id: int) -> FleetView | None:
    """Read a fleet's shared part of its devices' targets."""
    fleet = s.get(t.Fleet, fleet_id)
    if fleet is None:
        return None
    rel = release_for(s, fleet=fleet)
    devices = {r.id: DeviceRow(*r) for r in s.execute(
        sa.select(t.Device.id, t.Device.uuid, t.Device.name, t.Device.fleet_id,
                  t.Device.pinned_release_id).where(t.Device.fleet_id == fleet.id)).all()}
    with_vars = set(s.execute(sa.select(t.Variable.device_id).distinct().where(
        t.Variable.fleet_id == fleet.id, t.Variable.device_id.is_not(None))).scalars())
    return FleetView(id=fleet.id, uuid=fleet.uuid, name=fleet.name,
                     default_release=(rel.commit, rel.target) if rel else None,
                     variables=[_cached(v) for v in variables(s, fleet_id=fleet.id,
                                                              device_id=None)],
                     devices=devices, with_vars={d for d in with_vars if d is not None})


def _pinned(s: Session, view: FleetView, release_id: int) -> tuple[str, str] | None:
    if release_id not in view.pinned:
        rel = s.get(t.Release, release_id)
        ok = rel is not None and rel.status == "success" and rel.fleet_id == view.id
        view.pinned[release_id] = (rel.commit, rel.target) if ok and rel else None
    return view.pinned[release_id]


_DEVICE = sa.select(t.Device.id, t.Device.uuid, t.Device.name, t.Device.fleet_id,
                    t.Device.pinned_release_id).where(t.Device.id == sa.bindparam("d"))
_DEVICE_VARS = sa.select(t.Variable.kind, t.Variable.device_id, t.Variable.service,
                         t.Variable.name, t.Variable.value).where(
    t.Variable.device_id == sa.bindparam("d")).order_by(t.Variable.id)


def device_row(s: Session, *, device_id: int) -> DeviceRow | None:
    """A device's row (Core: this runs for every device after each change)."""
    row = s.execute(_DEVICE, {"d": device_id}).first()
    return DeviceRow(*row) if row else None


def device_document(s: Session, *, device: DeviceRow | t.Device, view: FleetView
                    ) -> dict[str, Any]:
    """The v3 document `{uuid: {name, config, apps: {fleetUuid: {...}}}}`."""
    own = [Var(*r) for r in s.execute(_DEVICE_VARS, {"d": device.id}).all()]
    return device_document_for(s, device=device, view=view, own=own)


def device_document_for(s: Session, *, device: DeviceRow | t.Device, view: FleetView,
                        own: list[Var]) -> dict[str, Any]:
    """The v3 document given the device's own variables."""
    vars_ = view.variables + own
    chosen = None
    if device.pinned_release_id is not None:
        chosen = _pinned(s, view, device.pinned_release_id)
    chosen = chosen or view.default_release
    releases: dict[str, Any] = {}
    if chosen is not None:
        commit, doc = chosen
        rel = json.loads(doc)
        for name, svc in rel.get("services", {}).items():
            svc["environment"] = service_environment(vars_, service=name)
        releases[commit] = rel
    app = {"id": view.id, "name": view.name, "class": "fleet", "is_host": False,
           "releases": releases}
    return {device.uuid: {"name": device.name, "config": merged_config(vars_),
                          "apps": {view.uuid: app}}}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def render_shared(*, device: DeviceRow, view: FleetView, generation: int
                  ) -> RenderedTarget | None:
    """`render_device` without a database, when the fleet's shared parts for this device are
    at hand (None otherwise)."""
    if device.id in view.with_vars:
        return None
    shared = view.shared.get(device.pinned_release_id)
    if shared is None:
        return None
    body = (f'{{{_dumps(device.uuid)}:{{"apps":{shared[0]},"config":{shared[1]},'
            f'"name":{_dumps(device.name)}}}}}').encode()
    return RenderedTarget(body=body, etag=_etag(body), generation=generation)


def render_device(s: Session, *, device: DeviceRow, view: FleetView, generation: int
                  ) -> RenderedTarget:
    """A device's rendered target. A device without variables of its own shares the fleet's
    serialised `apps` and `config` (computed once per release choice and generation), so a
    change to a big fleet re-renders each device by string concatenation; the bytes are the
    same as rendering the whole document."""
    if device.id in view.with_vars:
        return render(document=device_document(s, device=device, view=view),
                      generation=generation)
    key = device.pinned_release_id
    if key not in view.shared:
        doc = device_document_for(s, device=device, view=view, own=[])[device.uuid]
        view.shared[key] = (_dumps(doc["apps"]), _dumps(doc["config"]))
    rendered = render_shared(device=device, view=view, generation=generation)
    assert rendered is not None
    return rendered


def _etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()[:40]}"'


def render(*, document: dict[str, Any], generation: int) -> RenderedTarget:
    """Serialise a target and compute its ETag (a hash of the exact bytes)."""
    body = _dumps(document).encode()
    return RenderedTarget(body=body, etag=_etag(body), generation=generation)
