"""Copy a layer's diff directory exactly: owners, modes, times, every xattr (overlay's
`trusted.overlay.opaque`), whiteout char devices, symlinks, hard links, sparse-free content
with copy_file_range; and measure what such a copy needs."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_BLOCK = 4096


@dataclass(frozen=True)
class TreeUsage:
    """What copying a tree writes: file bytes, entries, and bytes on disk (4 KiB blocks)."""

    bytes: int
    entries: int
    disk: int


def tree_usage(path: Path) -> TreeUsage:
    """Regular-file bytes (hard links once), entries, and an estimate of disk use."""
    seen: set[tuple[int, int]] = set()
    total = entries = disk = 0
    for root, dirs, files in os.walk(path):
        entries += len(dirs)
        disk += _BLOCK * len(dirs)
        for name in files:
            entries += 1
            st = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
                disk += -(-st.st_size // _BLOCK) * _BLOCK
    return TreeUsage(bytes=total, entries=entries, disk=disk + _BLOCK)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENODATA):
            return
        raise
    for name in names:
        value = os.getxattr(src, name, follow_symlinks=False)
        os.setxattr(dst, name, value, follow_symlinks=False)


def _copy_data(src: str, dst: str, mode: int, size: int,
               advance: Callable[[int], None]) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o7777)
        try:
            left = size
            while left > 0:
                try:
                    n = os.copy_file_range(sfd, dfd, min(left, 1 << 30))
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                         errno.EOPNOTSUPP):
                        raise
                    n = os.sendfile(dfd, sfd, None, min(left, 1 << 30))
                if n == 0:
                    break
                left -= n
                advance(n)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _finish(src: str, dst: str, st: os.stat_result) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    _copy_xattrs(src, dst)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_tree(*, src: Path, dst: Path, advance: Callable[[int], None]) -> None:
    """Copy `src` to a new `dst` exactly (run as root to keep owners and trusted.* xattrs)."""
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = []
    top = os.lstat(src)
    os.mkdir(dst, 0o700)
    dirs.append((str(src), str(dst), top))
    for root, subdirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        droot = os.path.normpath(os.path.join(dst, rel))
        for name in subdirs:
            s, d = os.path.join(root, name), os.path.join(droot, name)
            st = os.lstat(s)
            if stat.S_ISLNK(st.st_mode):  # os.walk lists symlinks to dirs as dirs
                os.symlink(os.readlink(s), d)
                _finish(s, d, st)
                continue
            os.mkdir(d, 0o700)
            dirs.append((s, d, st))
        for name in files:
            s, d = os.path.join(root, name), os.path.join(droot, name)
            st = os.lstat(s)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], d)
                continue
            if stat.S_ISREG(st.st_mode):
                _copy_data(s, d, st.st_mode, st.st_size, advance)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or \
                    stat.S_ISFIFO(st.st_mode):
                os.mknod(d, st.st_mode, st.st_rdev)
            else:
                continue  # sockets are never part of a layer
            _finish(s, d, st)
            if st.st_nlink > 1:
                links[key] = d
    for s, d, st in reversed(dirs):  # children first, so directory mtimes stay as they were
        _finish(s, d, st)


def copy_trees(*, pairs: list[tuple[Path, Path]], advance: Callable[[int], None],
               workers: int = 2) -> None:
    """Copy several trees (each `src` to a new `dst`) on `workers` threads; the syscalls run
    without the GIL, so layers copy side by side. The first error is raised."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()

    def locked(n: int) -> None:
        with lock:
            advance(n)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(copy_tree, src=s, dst=d, advance=locked) for s, d in pairs]
        for fut in futures:
            fut.result()
