"""Unpacking an uploaded project (a tar, gzipped or not) without trusting it.

Only regular files, directories and links are made, under the project's own directory:
- member names are relative and have no `..`; nothing is written through a link (links are
  made last, after every file, and no member may live under one);
- a symbolic link is kept only when its target, resolved by path text over the archive's own
  links (never by following anything on disk), stays inside the project;
- a hard link must name a regular file met earlier; it becomes a copy;
- devices, FIFOs and sparse files are refused; so are oversized tar headers;
- the number of members, the unpacked bytes and the decompressed stream are capped.
`tarfile` is used only to parse headers, so this holds whatever the Python version's
extraction filters do (CVE-2025-4517 and kin)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgefleet.model.errors import InvalidInput, Problem

MAX_MEMBERS = 100_000
MAX_HEADER = 1 * 2**20
"""Longest PAX or GNU long-name header accepted (they are read into memory)."""
MAX_NAME = 4096
"""Longest member name or link target (Linux's PATH_MAX)."""
MAX_NAME_BYTES = 16 * 2**20
"""All member names together (they are kept in memory while unpacking)."""
MAX_LINK_EXPANSIONS = 40
HEADER_SLACK = 1536
"""Stream bytes allowed per member beyond its data (header, PAX record, padding)."""
CHUNK = 1 * 2**20
REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
ACCEPTED = "a tar archive, plain or gzipped once (.tar, .tar.gz, .tgz)"
"""What a push may upload (named in every refusal of the format)."""
OTHER_FORMATS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                 (b"\x28\xb5\x2f\xfd", "zstd"), (b"LZIP", "lzip"), (b"\x04\x22\x4d\x18", "lz4"),
                 (b"PK\x03\x04", "zip"), (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
                 (b"\x1f\x9d", "compress (.Z)"))
"""Magic numbers of compressed formats, refused from the first bytes (unless they are a
valid tar header: a first member may be named `BZh...`)."""


class TooLarge(InvalidInput):
    """The upload is bigger (packed or unpacked) than the server accepts: a 413."""


def refused(member: str, reason: str) -> InvalidInput:
    return InvalidInput("upload", [Problem(member, reason)])


@dataclass(frozen=True)
class Limits:
    """Caps for one upload."""

    max_bytes: int
    """Unpacked bytes (and, with headers, the decompressed stream)."""
    max_members: int = MAX_MEMBERS

    @property
    def stream_bytes(self) -> int:
        return self.max_bytes + self.max_members * HEADER_SLACK

    def too_large(self, member: str = "") -> TooLarge:
        return TooLarge("upload", [Problem(member, (
            f"the project unpacks to more than {self.max_bytes // 2**20} MiB (or "
            f"{self.max_members} files), more than this server accepts"))])


class _Stream(io.RawIOBase):
    """The decompressed bytes of a plain or gzipped file, refused beyond a cap."""

    def __init__(self, raw: IO[bytes], limits: Limits) -> None:
        self.raw = raw
        self.limits = limits
        self.total = 0
        head = raw.read(2)
        self.pending = head
        self.inflate = zlib.decompressobj(wbits=47) if head == b"\x1f\x8b" else None
        self.ahead = b""
        while len(self.ahead) < tarfile.BLOCKSIZE and (more := self._next(CHUNK)):
            self.ahead += more
        self._refuse_other_formats()

    def _refuse_other_formats(self) -> None:
        """A bzip2, xz, zstd, ... stream (or a gzip inside the gzip) is refused from its
        first bytes, before any more of it is read or decompressed."""
        block = self.ahead[:tarfile.BLOCKSIZE]
        if len(block) == tarfile.BLOCKSIZE and _checksum_ok(block):
            return
        for magic, name in OTHER_FORMATS:
            if self.ahead.startswith(magic):
                what = f"a {name} stream inside a gzip" if self.inflate else f"{name}-compressed"
                raise refused("", f"the upload is {what}; the server accepts {ACCEPTED}: "
                                  "pack the project with `tar -czf` (or `edgefleet push`)")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read(len(view))
        view[:len(data)] = data
        return len(data)

    def _read(self, size: int) -> bytes:
        if self.ahead:
            data, self.ahead = self.ahead[:size], self.ahead[size:]
            return data
        return self._next(size)

    def _next(self, size: int) -> bytes:
        """The next decompressed bytes (b"" at the end), counted against the cap."""
        while True:
            if self.inflate is None:
                data = self.pending + self.raw.read(max(size - len(self.pending), 0))
                self.pending = b""
            else:
                data = self.inflate.unconsumed_tail or self.pending or self.raw.read(CHUNK)
                self.pending = b""
                if not data:
                    return b""
                try:
                    data = self.inflate.decompress(data, size)
                except zlib.error as exc:
                    raise refused("", f"not a usable gzip stream: {exc}") from None
                if not data and not self.inflate.unconsumed_tail and not self.inflate.eof:
                    continue
            self.total += len(data)
            if self.total > self.limits.stream_bytes:
                raise self.limits.too_large()
            return data


def _checksum_ok(block: bytes) -> bool:
    """Whether a 512-byte block is a tar header (its checksum field matches)."""
    field = block[148:156].replace(b"\0", b" ").strip()
    try:
        stored = int(field, 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    return stored == unsigned


class _GuardedInfo(tarfile.TarInfo):
    """Header parsing that refuses, before reading them, old GNU sparse headers and
    extended headers too long to hold in memory. (`_proc_member` is tarfile's dispatch for
    every header since Python 2; were it renamed, the stream cap would still bound memory.)"""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise refused(self.name, "sparse files are not accepted")
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) \
                and self.size > MAX_HEADER:
            raise refused(self.name, f"an extended header of {self.size} bytes")
        return super()._proc_member(tarfile_)  # type: ignore[misc, no-any-return]


def clean_name(name: str) -> str:
    """A member name as a relative path without `.`; refused if absolute or with `..`."""
    if "\0" in name:
        raise refused(name.replace("\0", "\\0"), "a NUL character in the name")
    if len(name) > MAX_NAME:
        raise refused(name[:200] + "...", f"a name longer than {MAX_NAME} characters")
    if name.startswith("/"):
        raise refused(name, "an absolute name; members must be relative to the project")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise refused(name, "`..` in the name; members must stay inside the project")
    return "/".join(parts)


def resolve_text(parts: list[str], links: dict[str, str], budget: list[int]
                 ) -> list[str] | None:
    """Where a path (components from the project root) leads, expanding the archive's links
    by their text; None when it leaves the project (or loops)."""
    out: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
        target = links.get("/".join(out))
        if target is None:
            continue
        budget[0] -= 1
        if budget[0] < 0 or target.startswith("/"):
            return None
        found = resolve_text(out[:-1] + target.split("/"), links, budget)
        if found is None:
            return None
        out = found
    return out


@dataclass
class _Unpacker:
    root: Path
    limits: Limits
    kinds: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    written: int = 0
    members: int = 0
    name_bytes: int = 0

    def _parents(self, name: str) -> None:
        parts = name.split("/")
        for n in range(1, len(parts)):
            prefix = "/".join(parts[:n])
            kind = self.kinds.setdefault(prefix, "dir")
            if kind != "dir":
                raise refused(name, f"{prefix!r} is a {kind}, not a directory")

    def _claim(self, name: str, kind: str) -> None:
        self._parents(name)
        old = self.kinds.get(name)
        if old is not None and not (old == kind == "dir"):
            raise refused(name, f"appears twice in the archive (as {old} and {kind})")
        self.kinds[name] = kind

    def _count(self, name: str, size: int) -> None:
        self.written += size
        if self.written > self.limits.max_bytes:
            raise self.limits.too_large(name)

    def _link_ok(self, name: str, target: str) -> bool:
        parts = name.split("/")[:-1] + target.split("/")
        return not target.startswith("/") and \
            resolve_text(parts, self.links, [MAX_LINK_EXPANSIONS]) is not None

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise self.limits.too_large(m.name)
        name = clean_name(m.name)
        if not name:
            return
        self.name_bytes += len(name) + len(m.linkname)
        if self.name_bytes > MAX_NAME_BYTES:
            raise self.limits.too_large(name)
        if m.sparse is not None or any(k.startswith("GNU.sparse.") for k in m.pax_headers):
            raise refused(name, "sparse files are not accepted")
        path = self.root / name
        if m.type == tarfile.DIRTYPE:
            self._claim(name, "dir")
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
        elif m.type in REGULAR:
            self._claim(name, "file")
            self._count(name, m.size)
            path.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(m)
            assert source is not None
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
            os.chmod(path, (m.mode & 0o755) | 0o600)
            with contextlib.suppress(OSError, OverflowError, ValueError):
                os.utime(path, (m.mtime, m.mtime))
        elif m.type == tarfile.LNKTYPE:
            try:
                target = clean_name(m.linkname)
            except InvalidInput:
                raise refused(name, f"a hard link to {m.linkname!r}, outside the project"
                              ) from None
            if self.kinds.get(target) != "file":
                raise refused(name, f"a hard link to {m.linkname!r}, which is not a regular "
                                    "file earlier in the archive")
            self._claim(name, "file")
            self._count(name, (self.root / target).stat().st_size)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.root / target, path, follow_symlinks=False)
        elif m.type == tarfile.SYMTYPE:
            if len(m.linkname) > MAX_NAME or "\0" in m.linkname:
                raise refused(name, f"a link target longer than {MAX_NAME} characters")
            self._claim(name, "link")
            self.links[name] = m.linkname
            if not self._link_ok(name, m.linkname):
                raise refused(name, f"a link to {m.linkname!r}, outside the project")
        else:
            raise refused(name, "only regular files, directories and links are accepted")

    def make_links(self) -> None:
        """Links last, once every one is known (a later link may change where an earlier
        link's text leads)."""
        for name, target in self.links.items():
            if not self._link_ok(name, target):
                raise refused(name, f"a link to {target!r}, outside the project")
        for name, target in self.links.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, path)


def unpack_file(*, archive: Path, into: Path, limits: Limits) -> None:
    """Unpack the upload stored at `archive` into the (empty) directory `into`.
    Raises InvalidInput (TooLarge for caps) naming the member at fault."""
    unpacker = _Unpacker(root=into, limits=limits)
    name = ""
    try:
        with archive.open("rb") as raw, tarfile.open(
                fileobj=_Stream(raw, limits), mode="r|", tarinfo=_GuardedInfo) as tar:
            for m in tar:
                name = m.name
                unpacker.member(tar, m)
                tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps them all
            name = ""
            unpacker.make_links()
    except InvalidInput:
        raise
    except (tarfile.TarError, EOFError, ValueError, OverflowError) as exc:
        raise refused(name, f"not a usable tar archive ({exc}); the server accepts {ACCEPTED}"
                      ) from None
    except OSError as exc:  # never show the server's paths
        raise refused(name, f"cannot be unpacked: {exc.strerror or type(exc).__name__}"
                      ) from None
