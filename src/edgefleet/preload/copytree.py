"""Copy a layer's diff directory exactly: owners, modes, times, every xattr (overlay's
`trusted.overlay.opaque`), whiteout char devices, symlinks, hard links, sparse-free content;
and measure what such a copy needs.

With the layer's tar-split, the copy also verifies the layer in the same walk: files are
copied in the tar stream's order, each one right after `layer_digest` has hashed it and checked
its CRC-64, by the kernel (copy_file_range, page cache to page cache) from the descriptor it
was read through. Without it, contents are copied the same way, in directory order."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgefleet.engine.tarsplit import layer_digest

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


def _copy_fd(sfd: int, dfd: int, size: int, advance: Callable[[int], None]) -> None:
    """Copy `size` bytes from the start of `sfd` in the kernel (page cache to page cache)."""
    done = 0
    while done < size:
        count = min(size - done, 1 << 30)
        try:
            n = os.copy_file_range(sfd, dfd, count, done, done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            os.lseek(dfd, done, os.SEEK_SET)
            n = os.sendfile(dfd, sfd, done, count)
        if n == 0:
            break
        done += n
        advance(n)


def _create(dst: str, mode: int) -> int:
    return os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o7777)


def _copy_data(src: str, dst: str, mode: int, size: int,
               advance: Callable[[int], None]) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        dfd = _create(dst, mode)
        try:
            _copy_fd(sfd, dfd, size, advance)
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


def _nothing(n: int) -> None:
    return None


def _copier(files: dict[bytes, tuple[str, str, os.stat_result]],
            done: dict[tuple[int, int], str]) -> Callable[[bytes, int], None]:
    """A tar-split file hook that copies each checked file, from its open descriptor, into
    the copy (the bytes were just read, so the kernel copies them from the page cache)."""

    def copy(rel: bytes, sfd: int) -> None:
        got = files.get(rel)
        if got is None:
            return
        _, dst, st = got
        key = (st.st_dev, st.st_ino)
        if key in done:  # listed twice, or another name of a hard link: copied once
            return
        dfd = _create(dst, st.st_mode)
        done[key] = dst
        try:
            _copy_fd(sfd, dfd, st.st_size, _nothing)  # layer_digest counted these bytes
        finally:
            os.close(dfd)

    return copy


def copy_tree(*, src: Path, dst: Path, advance: Callable[[int], None],
              tar_split: Path | None = None, crc: bool = True) -> str | None:
    """Copy `src` to a new `dst` exactly (run as root to keep owners and trusted.* xattrs).
    With `tar_split`, verify while copying: returns the layer's diffId as recomputed from what
    was copied (LayerMismatch names a file that does not match its record)."""
    files: dict[bytes, tuple[str, str, os.stat_result]] = {}
    dirs: list[tuple[str, str, os.stat_result]] = []
    top = os.lstat(src)
    os.mkdir(dst, 0o700)
    dirs.append((str(src), str(dst), top))
    for root, subdirs, names in os.walk(src):
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
        for name in names:
            s, d = os.path.join(root, name), os.path.join(droot, name)
            st = os.lstat(s)
            if stat.S_ISREG(st.st_mode):
                files[os.fsencode(os.path.normpath(os.path.join(rel, name)))] = (s, d, st)
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or \
                    stat.S_ISFIFO(st.st_mode):
                os.mknod(d, st.st_mode, st.st_rdev)
            else:
                continue  # sockets are never part of a layer
            _finish(s, d, st)
    done: dict[tuple[int, int], str] = {}  # source inode -> the copy holding its content
    digest = None
    if tar_split is not None:
        digest = layer_digest(tar_split=tar_split, diff_dir=src, progress=advance,
                              on_file=_copier(files, done), crc=crc)
    for s, d, st in files.values():  # what the stream did not carry: empty files, hard links
        key = (st.st_dev, st.st_ino)
        if done.get(key, d) != d:
            os.link(done[key], d)
            continue
        if key not in done:
            _copy_data(s, d, st.st_mode, st.st_size, advance)
            done[key] = d
        _finish(s, d, st)
    for s, d, st in reversed(dirs):  # children first, so directory mtimes stay as they were
        _finish(s, d, st)
    return digest
