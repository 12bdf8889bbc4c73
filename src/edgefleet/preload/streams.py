"""Layers as tar streams (bundle format 2): `layers/<chainId hex>/layer.tar` is the layer's
tar stream, the very bytes its diffId hashes.

- `write_stream` rebuilds a layer's stream from an engine's overlay2 `diff` dir and its
  tar-split (engine/tarsplit.py: sha256 of the whole, CRC-64 per file on request) and writes
  it to one file as it hashes it: one sequential read and hash per layer, no tree.
- `unpack_stream` hashes such a file (one sequential read; a stream that is not the layer
  is not unpacked), then builds the overlay2 `diff` tree the engine would have built, file
  contents copied by the kernel from the stream's file: `.wh.<name>` → a 0:0 char device,
  `.wh..wh..opq` → the `trusted.overlay.opaque` xattr on its directory; owners, modes,
  times, PAX xattrs, hard links, devices. Nothing it writes leaves `dst`: names are
  normalised, `..` refused, and a directory that is a symlink is never written through.
  The caller compares the returned diffId with the expected one and removes `dst` on a
  mismatch (nothing names it yet)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

from edgefleet.engine.tarsplit import LayerMismatch, layer_digest, relative_name

STREAM = "layer.tar"
_CHUNK = 1 << 20
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


def write_stream(*, tar_split: Path, diff_dir: Path, dst: Path,
                 advance: Callable[[int], None], crc: bool = True) -> str:
    """Write the layer's tar stream to a new file `dst`; its diffId as recomputed (with
    `crc`, every file checked against its CRC-64 on the way: LayerMismatch names one that is
    not). One pass: each buffer read from the diff dir is hashed and written out as it is
    (the bytes written are the bytes hashed). Measured against hashing each file and then
    having the kernel copy it from the same descriptor: 15-20% less CPU for a 64 MB layer."""
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def sink(data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]

    try:
        return layer_digest(tar_split=tar_split, diff_dir=diff_dir, progress=advance,
                            sink=sink, crc=crc)
    finally:
        os.close(out)


class _Tree:
    """Where entries land: `dst`, and the directories under it known to be real ones."""

    def __init__(self, dst: Path) -> None:
        self.top = os.fsencode(dst)
        self.dirs: set[bytes] = {b""}

    def parent(self, rel: bytes) -> bytes:
        """The absolute path for `rel`, after making sure each directory above it is a real
        directory inside the tree (created 0755 when the stream did not list it first)."""
        head = rel.rpartition(b"/")[0]
        if head not in self.dirs:
            path = self.top
            done = b""
            for part in head.split(b"/"):
                done = part if not done else done + b"/" + part
                path = os.path.join(path, part)
                if done in self.dirs:
                    continue
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    os.mkdir(path, 0o755)
                    st = os.lstat(path)
                if not stat.S_ISDIR(st.st_mode):
                    raise LayerMismatch(file=os.fsdecode(rel), reason="a parent is not a "
                                        "directory (symlink or file)")
                self.dirs.add(done)
        return os.path.join(self.top, rel)


def _clear(path: bytes) -> None:
    """A later entry replaces an earlier non-directory of the same name (tar semantics)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)


def _attrs(path: bytes, m: tarfile.TarInfo, *, fd: int | None = None) -> None:
    os.chown(fd if fd is not None else path, m.uid, m.gid, follow_symlinks=fd is not None)
    for key, value in m.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key.removeprefix("SCHILY.xattr.")
            raw = value.encode("utf-8", "surrogateescape")
            if fd is not None:
                os.setxattr(fd, name, raw)
            else:
                os.setxattr(path, name, raw, follow_symlinks=False)
    if not m.issym():
        os.chmod(fd if fd is not None else path, m.mode & 0o7777)
    ns = int(m.mtime * 1e9)
    os.utime(fd if fd is not None else path, ns=(ns, ns),
             follow_symlinks=fd is not None)


def _hash_fd(fd: int, advance: Callable[[int], None]) -> str:
    sha = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while n := os.readv(fd, [view]):
        sha.update(view[:n])
        advance(n)
    return "sha256:" + sha.hexdigest()


def _copy_range(sfd: int, dfd: int, offset: int, size: int, *, dst_offset: int = 0) -> None:
    """`size` bytes at `offset` of `sfd` into `dfd` at `dst_offset`, copied by the kernel
    (page cache to page cache), falling back to sendfile where copy_file_range is refused."""
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(sfd, dfd, size - done, offset + done, dst_offset + done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            os.lseek(dfd, dst_offset + done, os.SEEK_SET)
            n = os.sendfile(dfd, sfd, offset + done, size - done)
        if n == 0:
            raise LayerMismatch(file="", reason="the stream ends inside a file")
        done += n


def unpack_stream(*, src: Path, dst: Path, advance: Callable[[int], None],
                  expect: str | None = None) -> str:
    """Build the overlay2 diff tree of the stream in `src` at a new directory `dst`; returns
    the sha256 of the whole stream (its diffId when it is the layer it claims to be). The
    stream is hashed first (one sequential read); with `expect`, a stream that does not hash
    to it is not unpacked at all. File contents are then copied by the kernel from the
    stream's file, at the offsets its tar headers give."""
    sfd = os.open(src, os.O_RDONLY)
    try:
        digest = _hash_fd(sfd, advance)
        if expect is not None and digest != expect:
            return digest
        _unpack(src, sfd, dst)
    finally:
        os.close(sfd)
    return digest


def _unpack(src: Path, sfd: int, dst: Path) -> None:
    os.mkdir(dst, 0o755)
    tree = _Tree(dst)
    dirs: list[tuple[bytes, tarfile.TarInfo]] = []
    with tarfile.open(src, mode="r:") as tf:
        for m in tf:
            rel = relative_name(os.fsencode(m.name))
            if not rel:
                continue
            base = rel.rpartition(b"/")[2]
            path = tree.parent(rel)
            if base == _OPAQUE.encode():
                os.setxattr(os.path.dirname(path), "trusted.overlay.opaque", b"y",
                            follow_symlinks=False)
                continue
            if base.startswith(_WHITEOUT.encode()):
                target = os.path.join(os.path.dirname(path), base[len(_WHITEOUT):])
                _clear(target)
                os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))  # as the engine makes them
                os.chown(target, m.uid, m.gid, follow_symlinks=False)
                continue
            if m.isdir():
                if rel not in tree.dirs:
                    _clear(path)
                    if not os.path.isdir(path):
                        os.mkdir(path, 0o700)
                    tree.dirs.add(rel)
                dirs.append((path, m))
                continue
            _clear(path)
            if m.isreg():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600)
                try:
                    _copy_range(sfd, fd, m.offset_data, m.size)
                    _attrs(path, m, fd=fd)
                finally:
                    os.close(fd)
                continue
            if m.islnk():
                os.link(tree.parent(relative_name(os.fsencode(m.linkname))), path,
                        follow_symlinks=False)
                continue
            if m.issym():
                os.symlink(m.linkname, path)
            elif m.ischr() or m.isblk() or m.isfifo():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() \
                    else stat.S_IFIFO
                os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
            else:
                continue
            _attrs(path, m)
    for path, m in reversed(dirs):  # children first, so directory mtimes stay as recorded
        _attrs(path, m)
