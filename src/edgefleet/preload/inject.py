"""`preload inject`: put a bundle's images into a stopped engine's data root, with apps.json
beside it and, optionally, a static-IP connection in the boot partition. Every check (bundle,
target, engine stopped, apps.json, image configs, free space) runs before the first write;
each layer's diffId is verified while it is copied into an overlay2 dir that nothing names
yet, before any layerdb entry, image or tag is written. A mismatch, or any failure while
writing, removes what this run added.

Ids from the bundle never choose where a write lands: the manifest accepts ids only in their
exact forms (bundle.Manifest), and every path written in the data root is made by
`rootwrite.inside`, which refuses anything that would leave it. apps.json and the keyfile go
where the operator's options say (beside the data root, into --boot), never a bundle's.

With `from_root` instead of a bundle (`preload copy`), the images are read straight out of
another engine's data root (preload/source.RootSource): the same checks, the same verified
copy (each layer's files read once, hashed and CRC-checked against its tar-split, copied by
the kernel from the page cache), and no bundle written in between."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgefleet.engine import rootwrite
from edgefleet.engine.storage import DataRoot, StorageError, chain_ids
from edgefleet.preload.appsjson import (
    apps_json_path,
    load_apps,
    merge_apps,
    service_images,
    write_apps,
)
from edgefleet.preload.bundle import FORMAT, Manifest, read_manifest
from edgefleet.preload.errors import NoProgress, PreloadError, Progress
from edgefleet.preload.layercopy import LayerCopy, copy_layers
from edgefleet.preload.source import RootSource, Source
from edgefleet.preload.target import check_not_running, check_space, check_target_root

if TYPE_CHECKING:
    from edgefleet.model import formats
    from edgefleet.preload.netconf import StaticIp


@dataclass(frozen=True)
class InjectOptions:
    """What `preload inject` was asked to do."""

    data_root: Path
    bundle: Path | None = None
    """A bundle directory (`preload extract --out`) ..."""
    from_root: Path | None = None
    """... or another engine's data root to read `refs` from (`preload copy`)."""
    refs: tuple[str, ...] = ()
    apps: Path | None = None
    merge: bool = False
    apps_dest: Path | None = None
    boot: Path | None = None
    static_ip: StaticIp | None = None
    verify: bool = True
    pidfiles: tuple[Path, ...] = ()


@dataclass
class InjectResult:
    """What was written."""

    images: list[str] = field(default_factory=list)
    layers_copied: int = 0
    layers_skipped: int = 0
    bytes_copied: int = 0
    moved_tags: list[str] = field(default_factory=list)
    apps_json: Path | None = None
    keyfile: Path | None = None


def _normal_ref(ref: str) -> str:
    last = ref.rsplit("/", 1)[-1]
    return ref if "@" in ref or ":" in last else f"{ref}:latest"


def _plan_apps(opts: InjectOptions, manifest: Manifest, existing_tags: set[str]
               ) -> tuple[formats.AppsJson | None, Path]:
    dest = opts.apps_dest or apps_json_path(data_root=opts.data_root)
    if opts.apps is None:
        return None, dest
    apps = load_apps(path=opts.apps)
    if not dest.parent.is_dir():
        raise PreloadError(f"cannot write apps.json to {dest}: {dest.parent} is not a directory")
    if dest.exists():
        current = load_apps(path=dest)
        if not current.empty:
            if not opts.merge:
                raise PreloadError(f"{dest} already holds apps ({', '.join(current.apps)}): pass "
                                   "--merge to add yours to them, or remove it")
            apps = merge_apps(existing=current, new=apps)
    have = set(manifest.tags()) | existing_tags
    missing = {svc: ref for svc, ref in service_images(apps).items()
               if _normal_ref(ref) not in have}
    if missing:
        listed = ", ".join(f"{svc} uses {ref}" for svc, ref in sorted(missing.items()))
        raise PreloadError(f"apps.json names images that are neither in the bundle nor in the "
                           f"target, so the device would have to pull them: {listed}")
    return apps, dest


def _bundle_copies(src: Source, dests: dict[str, Path]) -> list[LayerCopy]:
    manifest = src.manifest
    user = {c: img.asked_as for img in reversed(manifest.images) for c in img.layers}
    return [LayerCopy(image=user.get(c, "?"), chain_id=c, diff_id=manifest.layers[c].diff_id,
                      src=src.stored(c), dst=dst,
                      tar_split=src.layerdb(c) / "tar-split.json.gz",
                      bytes=manifest.layers[c].bytes, entries=manifest.layers[c].files,
                      how="from-stream" if src.streams else "tree")
            for c, dst in dests.items()]


def _open_source(opts: InjectOptions) -> Source:
    """The bundle, or (`from_root`) the source engine's data root, with its checked manifest."""
    if opts.from_root is None:
        if opts.bundle is None:
            raise PreloadError("name a bundle (--from) or a source data root (--from-root)")
        return Source(path=opts.bundle, manifest=read_manifest(opts.bundle))
    from edgefleet.preload.extract import select

    if opts.from_root.resolve() == opts.data_root.resolve():
        raise PreloadError(f"--from-root and --data-root are both {opts.data_root}: copy "
                           "into another engine's data root")
    sel = select(data_root=opts.from_root, refs=opts.refs)
    manifest = Manifest(source=str(opts.from_root), verified=opts.verify, images=sel.images,
                        layers=sel.layers, format=FORMAT)
    try:  # ids become file names in the target: a damaged source root must not choose them
        manifest.check()
    except ValueError as exc:
        raise PreloadError(f"{opts.from_root} holds an id that is not in its exact form, "
                           f"nothing was written: {exc}") from None
    return RootSource(path=opts.from_root, manifest=manifest, image_dir=sel.root.image_dir)


def _check_configs(src: Source) -> None:
    """Each image config must hash to its image id (the id the diffIds hang from)."""
    manifest = src.manifest
    for img in manifest.images:
        try:
            raw = src.config(img.id).read_bytes()
        except OSError as exc:
            raise PreloadError(f"{src.path} lacks the config of {img.asked_as}: "
                               f"{exc.strerror}") from None
        if "sha256:" + hashlib.sha256(raw).hexdigest() != img.id:
            raise PreloadError(f"integrity check failed, nothing was written: image "
                               f"{img.asked_as}: its config does not hash to {img.id}")
        diff_ids = json.loads(raw).get("rootfs", {}).get("diff_ids", [])
        if [manifest.layers[c].diff_id for c in img.layers] != diff_ids or \
                chain_ids(diff_ids) != img.layers:
            raise PreloadError(f"integrity check failed, nothing was written: image "
                               f"{img.asked_as}: manifest layers differ from its config")


def inject(*, options: InjectOptions, progress: Progress | None = None) -> InjectResult:
    """Check everything, then write the layers, image configs, tags, apps.json and keyfile."""
    progress = progress or NoProgress()
    opts = options
    src = _open_source(opts)
    manifest = src.manifest
    is_root = check_target_root(data_root=opts.data_root)
    check_not_running(data_root=opts.data_root, pidfiles=opts.pidfiles)
    tags: set[str] = set()
    if is_root:
        try:
            repos = DataRoot(opts.data_root).repositories()
        except (StorageError, ValueError) as exc:
            raise PreloadError(f"cannot read {opts.data_root}'s repositories.json: {exc}") from None
        tags = {ref for entries in repos.values() for ref in entries}
    apps, apps_dest = _plan_apps(opts, manifest, tags)
    if opts.static_ip is not None:
        if opts.boot is None:
            raise PreloadError("--static-ip needs --boot (the mounted boot partition)")
        from edgefleet.preload.netconf import boot_check  # only then: uuid, ipaddress

        boot_check(opts.boot)
    try:
        present = {c for c in manifest.layers
                   if is_root and rootwrite.layer_present(root=opts.data_root, chain_id=c)}
    except StorageError as exc:
        raise PreloadError(str(exc)) from None
    to_copy = [c for c in manifest.layers if c not in present]
    for c in to_copy:
        stored = src.stored(c)
        if not (stored.is_file() if src.streams else stored.is_dir()):
            raise PreloadError(f"{src.path} lacks layer {c} ({stored}): extract it again")
    if opts.verify:
        _check_configs(src)
    usages = [src.usage(c) for c in to_copy]
    check_space(data_root=opts.data_root,
                needed=sum(u.disk for u in usages) + 64 * 1024 * (len(to_copy) + 4),
                inodes=sum(u.entries for u in usages) + 8 * len(to_copy) + 32)
    result = InjectResult(layers_skipped=len(present))
    previous = apps_dest.read_bytes() if apps is not None and apps_dest.exists() else None

    def finish() -> None:
        """apps.json, then repositories.json (in _write): a failure undoes both."""
        if apps is not None:
            write_apps(path=apps_dest, apps=apps)
            result.apps_json = apps_dest

    def undo_finish() -> None:
        if result.apps_json is not None:
            if previous is None:
                apps_dest.unlink(missing_ok=True)
            else:
                apps_dest.write_bytes(previous)

    _write(opts, src, to_copy, progress, result, finish=finish, undo_finish=undo_finish)
    if opts.static_ip is not None and opts.boot is not None:
        from edgefleet.preload.netconf import write_keyfile

        result.keyfile = write_keyfile(boot=opts.boot, cfg=opts.static_ip)
    return result


def _write(opts: InjectOptions, src: Source, to_copy: list[str], progress: Progress,
           result: InjectResult, *, finish: Callable[[], None],
           undo_finish: Callable[[], None]) -> None:
    root = opts.data_root
    manifest = src.manifest
    made_dirs: list[Path] = []
    cache_ids: dict[str, str] = {}
    committed: list[Path] = []
    configs: list[Path] = []
    try:
        made_dirs = rootwrite.init_root(root)
        for chain in to_copy:
            cache_id = rootwrite.free_cache_id(root=root, wanted=manifest.layers[chain].cache_id)
            while cache_id in cache_ids.values():
                cache_id = rootwrite.new_cache_id()
            rootwrite.inside(root, "overlay2", cache_id).mkdir(mode=0o710)
            cache_ids[chain] = cache_id
        # verified while copied: a mismatch raises here, and the except below undoes it all
        copy_layers(layers=_bundle_copies(src, {
            c: rootwrite.inside(root, "overlay2", cache_ids[c], "diff") for c in to_copy}),
            verify=opts.verify, progress=progress)
        for chain in to_copy:  # bottom first: a layer's `lower` names its parent's link
            rec = manifest.layers[chain]
            layerdb = src.layerdb(chain)
            cache_id = cache_ids[chain]
            parent_cache = None
            if rec.parent is not None:
                parent_cache = cache_ids.get(rec.parent) or rootwrite.layer_cache_id(
                    root=root, chain_id=rec.parent)
            rootwrite.finish_overlay_layer(root=root, cache_id=cache_id,
                                           parent_cache_id=parent_cache)
            files = {name: (layerdb / name).read_bytes()
                     for name in rootwrite.LAYERDB_FILES if (layerdb / name).exists()}
            files["cache-id"] = cache_id.encode()
            files["diff"] = rec.diff_id.encode()  # the checked manifest's ids, not the bundle's
            if rec.parent is not None:
                files["parent"] = rec.parent.encode()
            committed.append(rootwrite.commit_layerdb(root=root, chain_id=chain, files=files))
            result.layers_copied += 1
            result.bytes_copied += rec.bytes
        for img in manifest.images:
            raw = src.config(img.id).read_bytes()
            if rootwrite.write_image_config(root=root, image_id=img.id, config=raw, parent=None):
                configs.append(rootwrite.inside(root, "image", "overlay2", "imagedb", "content",
                                                "sha256", img.id.removeprefix("sha256:")))
            result.images.append(img.id)
        refs: dict[str, dict[str, str]] = {}
        for img in manifest.images:
            for ref, repo in img.refs.items():
                refs.setdefault(repo, {})[ref] = img.id
        finish()
        result.moved_tags = rootwrite.merge_repositories(root=root, refs=refs)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            undo_finish()
        for path in committed:
            shutil.rmtree(path, ignore_errors=True)
        for cache_id in cache_ids.values():
            rootwrite.remove_overlay_layer(root=root, cache_id=cache_id)
        for path in configs:
            path.unlink(missing_ok=True)
            shutil.rmtree(path.parent.parent.parent / "metadata" / "sha256" / path.name,
                          ignore_errors=True)
        for path in reversed(made_dirs):
            shutil.rmtree(path, ignore_errors=True)
        if isinstance(exc, (OSError, StorageError)):
            raise PreloadError(f"writing into {root} failed and was undone: {exc}") from None
        raise
