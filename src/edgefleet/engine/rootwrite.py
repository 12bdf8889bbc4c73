"""Write image pieces into a stopped engine's overlay2 data root, in the engine's own format:
overlay2 layer dirs with their `l/` short links and `link`/`lower` files, layerdb entries by
chain id, imagedb configs, and an atomic merge of repositories.json (seed 001/003)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from edgefleet.engine.storage import StorageError

LAYERDB_FILES = ("diff", "parent", "cache-id", "size", "tar-split.json.gz")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def inside(root: Path, *names: str) -> Path:
    """`root/names[0]/names[1]/...`, refused (StorageError) unless every name is one plain
    path component and the result, with symlinks of its parent resolved, stays under `root`.
    Every path this module writes, reads or removes in a data root is made by this function:
    ids from a bundle or a damaged root never choose where a write lands."""
    for name in names:
        if _NAME.fullmatch(name) is None or name in (".", ".."):
            raise StorageError(f"refusing the path component {name!r} under {root}: ids and "
                               "names must be plain file names")
    path = root.joinpath(*names)
    if names:
        real_root = root.resolve()
        parent = path.parent.resolve()
        if parent != real_root and not parent.is_relative_to(real_root):
            raise StorageError(f"refusing {path}: it resolves to {parent / path.name}, outside "
                               f"{real_root}")
    return path


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def new_link_id() -> str:
    """A 26-character short link name, as overlay2 makes them (base32 of 16 random bytes)."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")[:26]


def new_cache_id() -> str:
    """A random 64-hex cache id for an overlay2 layer directory."""
    return secrets.token_hex(32)


def image_dir(root: Path) -> Path:
    """`<root>/image/overlay2`: imagedb, layerdb and repositories.json."""
    return inside(root, "image", "overlay2")


def init_root(root: Path) -> list[Path]:
    """Create the directories an empty overlay2 data root needs; returns those it created."""
    made: list[Path] = []
    for rel, mode in (("", 0o710), ("image", 0o700), ("image/overlay2", 0o700),
                      ("image/overlay2/imagedb", 0o700),
                      ("image/overlay2/imagedb/content", 0o700),
                      ("image/overlay2/imagedb/content/sha256", 0o700),
                      ("image/overlay2/imagedb/metadata", 0o700),
                      ("image/overlay2/imagedb/metadata/sha256", 0o700),
                      ("image/overlay2/layerdb", 0o700), ("image/overlay2/layerdb/sha256", 0o755),
                      ("image/overlay2/layerdb/tmp", 0o755), ("overlay2", 0o710),
                      ("overlay2/l", 0o700)):
        path = inside(root, *rel.split("/")) if rel else root
        if not path.exists():
            path.mkdir(mode=mode)
            os.chmod(path, mode)
            made.append(path)
    return made


def layer_present(*, root: Path, chain_id: str) -> bool:
    """Whether the layer is already in the data root (layerdb entry and its overlay2 diff)."""
    entry = inside(root, "image", "overlay2", "layerdb", "sha256", _hex(chain_id))
    if not entry.is_dir():
        return False
    try:
        cache_id = (entry / "cache-id").read_text().strip()
    except OSError:
        raise StorageError(f"layer {chain_id} in {root} has a layerdb entry without cache-id: "
                           "the data root is damaged") from None
    if not inside(root, "overlay2", cache_id, "diff").is_dir():
        raise StorageError(f"layer {chain_id} in {root} has no overlay2/{cache_id}/diff: the "
                           "data root is damaged")
    return True


def layer_cache_id(*, root: Path, chain_id: str) -> str:
    """The overlay2 directory name (cache-id) of a layer in the data root."""
    entry = inside(root, "image", "overlay2", "layerdb", "sha256", _hex(chain_id))
    return (entry / "cache-id").read_text().strip()


def free_cache_id(*, root: Path, wanted: str) -> str:
    """`wanted` when no overlay2 dir of that name exists, else a fresh random one."""
    return wanted if wanted and not inside(root, "overlay2", wanted).exists() else new_cache_id()


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def finish_overlay_layer(*, root: Path, cache_id: str, parent_cache_id: str | None) -> str:
    """Give a layer dir whose `diff` is in place its `link`, `l/<link>`, `lower`, `work` and
    `committed`, as overlay2 does; returns the short link name."""
    layer = inside(root, "overlay2", cache_id)
    os.chmod(layer, 0o710)
    link = new_link_id()
    while inside(root, "overlay2", "l", link).exists():
        link = new_link_id()
    _write(layer / "link", link.encode(), 0o644)
    os.symlink(f"../{cache_id}/diff", inside(root, "overlay2", "l", link))
    if parent_cache_id is not None:
        parent = inside(root, "overlay2", parent_cache_id)
        parent_link = (parent / "link").read_text().strip()
        lower = f"l/{parent_link}"
        if (parent / "lower").exists():
            lower += ":" + (parent / "lower").read_text().strip()
        _write(layer / "lower", lower.encode(), 0o644)
        (layer / "work").mkdir(mode=0o700, exist_ok=True)
    _write(layer / "committed", b"", 0o600)
    return link


def remove_overlay_layer(*, root: Path, cache_id: str) -> None:
    """Undo a partly written layer dir (its short link and the dir)."""
    import shutil

    layer = inside(root, "overlay2", cache_id)
    with contextlib.suppress(OSError, StorageError):
        link = (layer / "link").read_text().strip()
        if link:
            inside(root, "overlay2", "l", link).unlink()
    shutil.rmtree(layer, ignore_errors=True)


def commit_layerdb(*, root: Path, chain_id: str, files: Mapping[str, bytes]) -> Path:
    """Write a layerdb entry in `layerdb/tmp` and rename it into `layerdb/sha256/<chainId>`."""
    base = ("image", "overlay2", "layerdb")
    tmp = inside(root, *base, "tmp", f"write-set-{secrets.token_hex(8)}")
    tmp.mkdir(mode=0o700)
    for name, data in files.items():
        _write(inside(tmp, name), data, 0o644)
    final = inside(root, *base, "sha256", _hex(chain_id))
    os.rename(tmp, final)
    return final


def write_image_config(*, root: Path, image_id: str, config: bytes, parent: str | None) -> bool:
    """Store an image config in imagedb (and its metadata); False when it was already there."""
    hexid = _hex(image_id)
    content = inside(root, "image", "overlay2", "imagedb", "content", "sha256", hexid)
    if content.exists():
        return False
    meta = inside(root, "image", "overlay2", "imagedb", "metadata", "sha256", hexid)
    meta.mkdir(mode=0o700, exist_ok=True)
    if parent:
        _write(meta / "parent", parent.encode(), 0o600)
    tmp = content.with_name(f".{hexid}.tmp")
    _write(tmp, config, 0o600)
    os.rename(tmp, content)
    return True


def merge_repositories(*, root: Path, refs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Add `{repo: {ref: imageId}}` to repositories.json, keeping every other entry, written to
    a temporary file, fsynced and renamed over the old one. Returns refs that pointed to
    another image before (they move, as with `docker load`)."""
    path = inside(root, "image", "overlay2", "repositories.json")
    data: dict[str, dict[str, dict[str, str]]] = {"Repositories": {}}
    if path.exists():
        try:
            data = json.loads(path.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise StorageError(f"{path} is not valid JSON ({exc.msg}): fix or remove it") from None
        data.setdefault("Repositories", {})
    moved = []
    for repo, entries in refs.items():
        have = data["Repositories"].setdefault(repo, {})
        for ref, image_id in entries.items():
            if have.get(ref) not in (None, image_id):
                moved.append(ref)
            have[ref] = image_id
    tmp = path.with_name(f".repositories.json.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, json.dumps(data, separators=(",", ":")).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return sorted(moved)
