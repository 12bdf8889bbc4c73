"""Applying a delta through a registry pull (issue 19): a loopback-only registry, alive for one
delta apply, from which the device's own engine pulls the new layers as the supervisor
rebuilds them (device/delta_blobs.py makes what it serves). The alternative to streaming an
archive into `POST /images/load` (device/delta.py chooses; bench/delta.py times both).

- Bound to 127.0.0.1 on an ephemeral port (dockerd treats 127.0.0.0/8 registries as insecure:
  plain HTTP, no daemon configuration), under a random repository name (an unguessable
  capability: any other name, and anything else, is answered 404).
- Every blob's LAST chunk is held back until it hashed to its digest: a blob that does not
  match is cut short (the connection dropped), the engine never completes it, and any later
  request is refused (404, which the engine does not retry); the supervisor then cancels the
  pull. The engine checks the digest of every blob too before it registers the layer.
- Large old files (unchanged files a "tar" plan copies, the files of an unchanged layer served
  again) go from the data root to the socket by sendfile (`FileSlice`s, framed by h11 by their
  length): only tar headers, literal bytes and small files pass through Python. Each such file
  is still read once to be hashed (device/delta_blobs.py), so the blob's last chunk still waits
  for its digest; a file changed between its hash and its send is caught by the engine's own
  digest check (a failed pull).
- A pulled image keeps a registry reference, and removing an image's last reference deletes
  it. So the layers come in under a CARRIER image (the target's config with a comment added),
  the target image is then registered by `POST /images/load` of an archive of its config
  alone (every layer is in the layer store: none is read), and the carrier's reference is
  removed, which deletes the carrier and leaves the target exactly as the load transport
  leaves it: by id, with no tag and no digest (the supervisor maps the release's ref to it).

HTTP: asyncio streams with h11 (a dependency already: the tunnel) parsing and framing, not
uvicorn: uvicorn's shutdown sleeps at least 0.1 s, a tenth of a whole update here, and this
serves three routes to one client; h11 does the HTTP/1.1 (keep-alive, `Connection: close`,
HEAD, the engine's TLS probe refused as not HTTP)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
import threading
from typing import cast

import h11

from edgefleet.device.delta_blobs import MANIFEST_TYPE, OK, Blob, Pipe
from edgefleet.device.delta_layers import FileSlice

REPO_PREFIX = "edgefleet-delta-"


class _Cut(Exception):
    """Ends a blob's response short: its connection is dropped."""


class LocalRegistry:
    """Serves one manifest and its blobs on 127.0.0.1 while in its `async with`."""

    def __init__(self, *, manifest: bytes, blobs: dict[str, Blob]) -> None:
        self.name = REPO_PREFIX + secrets.token_hex(16)
        self.manifest = manifest
        self.digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.blobs = blobs
        self.served: set[str] = set()
        self.requests = 0
        self.failed: BaseException | None = None
        self.broken = asyncio.Event()
        self._threads: list[tuple[threading.Thread, Pipe]] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.ref = f"127.0.0.1:{self._sock.getsockname()[1]}/{self.name}@{self.digest}"
        """What the engine pulls."""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> LocalRegistry:
        self._server = await asyncio.start_server(self._connection, sock=self._sock,
                                                  limit=1 << 16)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop at once: no new connection, the open ones dropped, the workers told to end
        (each ends within a chunk; they are daemon threads)."""
        if self._server is not None:
            self._server.close()
        else:
            self._sock.close()
        for writer in self._writers:
            writer.transport.abort()
        for _, pipe in self._threads:
            pipe.stopped.set()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        """One HTTP/1.1 connection (h11 parses and frames; keep-alive as the engine wants)."""
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER)
        clean = False
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(1 << 16))
                elif isinstance(event, h11.Request):
                    self.requests += 1
                    await self._respond(conn, writer, event.method == b"HEAD",
                                        event.target.decode("ascii", "replace").split("?")[0])
                    if conn.our_state is not h11.DONE:  # (`Connection: close`)
                        clean = True
                        break
                elif isinstance(event, h11.ConnectionClosed):
                    clean = True
                    break
                elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError, _Cut):
            pass  # (the engine first tries TLS: not HTTP)
        finally:
            self._writers.discard(writer)
            if clean:  # what is still buffered goes out first
                writer.close()
            else:  # a blob cut short, or not HTTP: drop the connection now
                writer.transport.abort()

    async def _respond(self, conn: h11.Connection, writer: asyncio.StreamWriter, head: bool,
                       path: str) -> None:
        parts = path.split("/")
        if path == "/v2/":
            body, kind, digest = b"{}", "application/json", ""
        elif len(parts) == 5 and parts[2] == self.name and parts[3] == "manifests" \
                and parts[4] == self.digest:
            body, kind, digest = self.manifest, MANIFEST_TYPE, self.digest
        elif len(parts) == 5 and parts[2] == self.name and parts[3] == "blobs" \
                and parts[4] in self.blobs and self.failed is None \
                and (head or parts[4] not in self.served):
            await self._blob(conn, writer, parts[4], head=head)
            return
        else:  # BLOB_UNKNOWN / MANIFEST_UNKNOWN: the engine does not retry a 404
            await _send(conn, writer, 404, _UNKNOWN, "application/json", head=head)
            return
        await _send(conn, writer, 200, body, kind, head=head, digest=digest)

    async def _blob(self, conn: h11.Connection, writer: asyncio.StreamWriter, digest: str, *,
                    head: bool) -> None:
        blob = self.blobs[digest]
        size = await asyncio.to_thread(blob.size)
        writer.write(conn.send(h11.Response(status_code=200, headers=[
            ("Content-Type", "application/octet-stream"), ("Content-Length", str(size)),
            ("Docker-Content-Digest", digest)])) or b"")
        if head:
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            return
        self.served.add(digest)
        pipe = Pipe(asyncio.get_running_loop())
        thread = threading.Thread(target=blob.produce, args=(pipe,), daemon=True,
                                  name=f"delta-blob-{digest[7:19]}")
        self._threads.append((thread, pipe))
        thread.start()
        pending: bytes | FileSlice | None = None
        try:
            while True:
                item = await pipe.get()
                if isinstance(item, (bytes, FileSlice)):
                    if pending is not None:
                        await _body(conn, writer, pending)
                    pending = item
                elif item is OK:
                    break
                elif isinstance(item, BaseException):
                    raise item
            if pending is not None:
                await _body(conn, writer, pending, drain=False)
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
        except BaseException as exc:
            if self.failed is None:
                self.failed = exc
            self.broken.set()
            if isinstance(pending, FileSlice):
                pending.close()
            raise _Cut from None  # the connection is dropped: the blob ends short
        finally:
            pipe.drop()


async def _body(conn: h11.Connection, writer: asyncio.StreamWriter, item: bytes | FileSlice,
                *, drain: bool = True) -> None:
    """A part of a blob's body: bytes written, a file slice sent by the kernel (sendfile)."""
    for part in conn.send_with_data_passthrough(h11.Data(data=cast(bytes, item))) or []:
        if isinstance(part, FileSlice):
            with part.file:
                await asyncio.get_running_loop().sendfile(writer.transport, part.file,
                                                          part.offset, part.count)
        else:
            writer.write(part)
    if drain and not isinstance(item, FileSlice):
        await writer.drain()


_UNKNOWN = b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}'


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, status: int, body: bytes,
                kind: str, *, head: bool, digest: str = "") -> None:
    headers = [("Content-Type", kind), ("Content-Length", str(len(body))),
               ("Docker-Distribution-API-Version", "registry/2.0")]
    if digest:
        headers.append(("Docker-Content-Digest", digest))
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
    if body and not head:
        writer.write(conn.send(h11.Data(data=body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
