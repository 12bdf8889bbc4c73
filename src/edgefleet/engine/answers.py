"""Engine API answers as model values: image, network and volume lists, log lines, and
image references split for a pull."""

from __future__ import annotations

from typing import Any

from edgefleet.model import naming
from edgefleet.model.engine_events import LogLine
from edgefleet.model.engine_state import ImageState, NetworkState, VolumeState
from edgefleet.model.timeutil import iso_to_ms


def log_line(ref: str, raw: bytes, is_stderr: bool) -> LogLine:
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    stamp, _, message = text.partition(" ")
    ts = iso_to_ms(stamp) if stamp[:4].isdigit() else None
    if ts is None:
        message, ts = text, 0
    return LogLine(container_id=ref, message=message, timestamp_ms=ts, is_stderr=is_stderr)


def split_ref(ref: str) -> tuple[str, str]:
    """`repo:tag` → (repo, tag); `repo@digest` → (repo@digest, ""); bare repo → latest."""
    if "@" in ref:
        return ref, ""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
        return name, tag
    return ref, "latest"


def images(raw: list[dict[str, Any]]) -> tuple[ImageState, ...]:
    return tuple(ImageState(id=i["Id"], repo_tags=tuple(i.get("RepoTags") or ()),
                            repo_digests=tuple(i.get("RepoDigests") or ()),
                            size=int(i.get("Size") or 0), labels=i.get("Labels") or {})
                 for i in raw)


def networks(raw: list[dict[str, Any]]) -> tuple[NetworkState, ...]:
    return tuple(NetworkState(id=n["Id"], name=n["Name"], driver=n.get("Driver") or "",
                              labels=n.get("Labels") or {},
                              config_hash=(n.get("Labels") or {}).get(naming.CONFIG_HASH, ""))
                 for n in raw)


def volumes(raw: dict[str, Any]) -> tuple[VolumeState, ...]:
    return tuple(VolumeState(name=v["Name"], driver=v.get("Driver") or "local",
                             labels=v.get("Labels") or {})
                 for v in (raw.get("Volumes") or []))
