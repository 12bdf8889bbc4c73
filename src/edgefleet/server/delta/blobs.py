"""An image's parts from the server's registry (Docker Registry HTTP API v2): its config and
each layer's tar stream (the registry holds them gzip'd; the stream is what the diffId hashes)."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

import httpx

MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json"))
REF = re.compile(r"(?P<host>[^/]+)/(?P<name>[a-z0-9._/-]+)@(?P<digest>sha256:[0-9a-f]{64})")
MAX_LAYER = 4 << 30


class BlobError(RuntimeError):
    """The registry does not have what a delta needs, or it does not hash as named."""


@dataclass(frozen=True)
class RemoteImage:
    """A release image in the registry: `host/name@digest`, its config and layers."""

    ref: str
    name: str
    config: bytes
    layers: tuple[tuple[str, str, int], ...]
    """(blob digest, media type, compressed size) per layer, bottom first."""
    manifest: bytes = b""
    """The manifest as the registry served it (it hashes to the ref's digest)."""

    @property
    def image_id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config).hexdigest()

    @property
    def diff_ids(self) -> list[str]:
        return list(json.loads(self.config)["rootfs"]["diff_ids"])

    @property
    def pull_bytes(self) -> int:
        """What a registry pull downloads for this image with none of its layers present."""
        return len(self.config) + sum(size for _, _, size in self.layers)


def parse_ref(ref: str, *, registry: str) -> tuple[str, str]:
    """(name, digest) of a `registry/name@sha256:...` ref; BlobError for any other."""
    m = REF.fullmatch(ref)
    if m is None or m["host"] != registry:
        raise BlobError(f"{ref!r} is not an image of this server's registry {registry} "
                        "(expected HOST:PORT/NAME@sha256:DIGEST)")
    return m["name"], m["digest"]


class Registry:
    """Reads manifests and blobs over HTTP (one client, closed with `close`)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.http = httpx.Client(base_url=f"http://{address}/v2", timeout=120)

    def close(self) -> None:
        self.http.close()

    def image(self, ref: str) -> RemoteImage:
        name, digest = parse_ref(ref, registry=self.address)
        r = self.http.get(f"/{name}/manifests/{digest}", headers={"Accept": MANIFEST_TYPES})
        if r.status_code != 200:
            raise BlobError(f"the registry has no manifest {ref} (HTTP {r.status_code})")
        if "sha256:" + hashlib.sha256(r.content).hexdigest() != digest:
            raise BlobError(f"manifest of {ref} does not hash to its digest")
        doc: dict[str, Any] = r.json()
        config = self.blob(name, str(doc["config"]["digest"]))
        layers = tuple((str(x["digest"]), str(x.get("mediaType", "")), int(x.get("size", 0)))
                       for x in doc["layers"])
        return RemoteImage(ref=ref, name=name, config=config, layers=layers,
                           manifest=r.content)

    def blob(self, name: str, digest: str) -> bytes:
        r = self.http.get(f"/{name}/blobs/{digest}", follow_redirects=True)
        if r.status_code != 200:
            raise BlobError(f"the registry has no blob {name}@{digest} (HTTP {r.status_code})")
        if "sha256:" + hashlib.sha256(r.content).hexdigest() != digest:
            raise BlobError(f"blob {name}@{digest} does not hash to its digest")
        return r.content

    def layer_stream(self, image: RemoteImage, diff_id: str) -> bytes:
        """The layer's tar stream (gunzipped when stored gzip'd), checked against its diffId."""
        index = image.diff_ids.index(diff_id)
        digest = image.layers[index][0]
        data = self.blob(image.name, digest)
        if data[:2] == b"\x1f\x8b":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = d.decompress(data, MAX_LAYER) + d.flush()
        if "sha256:" + hashlib.sha256(data).hexdigest() != diff_id:
            raise BlobError(f"layer {digest} of {image.ref} does not unpack to {diff_id}")
        return data
