"""A small Docker Registry HTTP API v2 client (httpx): image manifests, layer sizes and diff ids,
so the supervisor can estimate the space a pull needs before it starts one."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from edgefleet.engine.errors import EngineError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
DOCKER_HUB = "registry-1.docker.io"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
         "i686": "386", "i386": "386"}
_VARIANT = {"armv7l": "v7", "armv6l": "v6", "aarch64": "v8"}


class RegistryError(EngineError):
    """The registry could not be asked (unreachable, refused, bad answer): retry later."""


class NoMatchingPlatform(RegistryError):
    """The image exists but has no variant for this device's platform: it cannot run here."""


@dataclass(frozen=True)
class Platform:
    """The device's platform as image indexes name it (`linux`/`arm`/`v7`)."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    @classmethod
    def from_engine(cls, *, os_type: str, machine: str) -> Platform:
        """From the engine's /info `OSType` and `Architecture` (uname -m)."""
        return cls(os=os_type or "linux", architecture=_ARCH.get(machine, machine),
                   variant=_VARIANT.get(machine, ""))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class ImageRef:
    """`registry/repository:tag` or `@digest`, normalised as the engine does."""

    registry: str
    repository: str
    reference: str

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        name, digest = [*ref.split("@", 1), ""][:2]
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, rest
        else:
            registry, path = DOCKER_HUB, name
        tag = ""
        if ":" in path.rsplit("/", 1)[-1]:
            path, tag = path.rsplit(":", 1)
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        return cls(registry=registry, repository=path, reference=digest or tag or "latest")


@dataclass(frozen=True)
class Layer:
    """One layer blob: compressed size from the manifest, uncompressed digest from the config."""

    digest: str
    size: int
    diff_id: str


@dataclass(frozen=True)
class ImageManifest:
    """What a pull of one image will download."""

    ref: str
    digest: str
    config_digest: str
    config_size: int
    layers: tuple[Layer, ...]


def is_insecure(*, registry: str, insecure: Iterable[str]) -> bool:
    """True when the engine talks plain HTTP to it: loopback, or listed in the engine's
    insecure registries (names or CIDRs)."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    entries = list(insecure)
    if registry in entries or host in entries or host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if addr.is_loopback:
        return True
    for entry in entries:
        try:
            if addr in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class RegistryClient:
    """Reads manifests and image configs anonymously, or with the credentials `auth` gives for
    a registry (`{"username", "password"}`); handles Bearer-token and Basic challenges."""

    def __init__(self, *, platform: Platform, insecure: Iterable[str] = (),
                 auth: Callable[[str], dict[str, str] | None] = lambda registry: None,
                 timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.platform = platform
        self.insecure = tuple(insecure)
        self.auth = auth
        self._tokens: dict[tuple[str, str], str] = {}
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=True,
                                       transport=transport)

    async def close(self) -> None:
        await self._http.aclose()

    def base_url(self, registry: str) -> str:
        scheme = "http" if is_insecure(registry=registry, insecure=self.insecure) else "https"
        return f"{scheme}://{registry}/v2/"

    async def manifest(self, *, ref: str) -> ImageManifest:
        """The manifest of `ref` for this platform (an index is resolved), with layer diff
        ids from its config. Raises NoMatchingPlatform or RegistryError naming the cause."""
        image = ImageRef.parse(ref)
        accept = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
        body, media, digest = await self._get_manifest(image, image.reference, accept)
        if media in INDEX_TYPES or "manifests" in body:
            chosen = self._pick(ref, body.get("manifests") or [])
            body, media, digest = await self._get_manifest(image, chosen, accept)
        if media not in MANIFEST_TYPES and "layers" not in body:
            raise RegistryError(f"image {ref}", f"unsupported manifest type {media!r}")
        config = body.get("config") or {}
        raw_layers = body.get("layers") or []
        cfg = json.loads(await self._get(image, f"blobs/{config.get('digest')}", accept="*/*"))
        diff_ids = list((cfg.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(raw_layers):
            raise RegistryError(f"image {ref}", "config and manifest disagree on layers")
        return ImageManifest(
            ref=ref, digest=digest, config_digest=str(config.get("digest", "")),
            config_size=int(config.get("size") or 0),
            layers=tuple(Layer(digest=str(x["digest"]), size=int(x.get("size") or 0),
                               diff_id=str(d)) for x, d in zip(raw_layers, diff_ids,
                                                               strict=True)))

    async def ping(self, *, registry: str) -> None:
        """Raise RegistryError naming why the registry does not answer `/v2/`."""
        try:
            resp = await self._http.get(self.base_url(registry))
        except httpx.HTTPError as exc:
            raise RegistryError(f"registry {registry}", describe_http_error(exc)) from None
        if resp.status_code not in (200, 401):
            raise RegistryError(f"registry {registry}", f"HTTP {resp.status_code} on /v2/")

    def _pick(self, ref: str, manifests: list[dict[str, Any]]) -> str:
        p = self.platform
        fits = [m for m in manifests if (m.get("platform") or {}).get("os") == p.os and
                (m.get("platform") or {}).get("architecture") == p.architecture]
        exact = [m for m in fits if not p.variant or
                 (m.get("platform") or {}).get("variant", p.variant) == p.variant]
        chosen = (exact or fits)
        if not chosen:
            have = ", ".join(sorted("/".join(v for v in (
                (m.get("platform") or {}).get("os", "?"),
                (m.get("platform") or {}).get("architecture", "?"),
                (m.get("platform") or {}).get("variant", "")) if v) for m in manifests))
            raise NoMatchingPlatform(f"image {ref}", f"no variant for {p} (it has: {have})")
        return str(chosen[0]["digest"])

    async def _get_manifest(self, image: ImageRef, reference: str,
                            accept: str) -> tuple[dict[str, Any], str, str]:
        resp = await self._request(image, f"manifests/{reference}", accept=accept)
        media = resp.headers.get("content-type", "").split(";")[0].strip()
        body = json.loads(resp.content)
        media = str(body.get("mediaType") or media)
        digest = resp.headers.get("docker-content-digest", "")
        return body, media, digest

    async def _get(self, image: ImageRef, path: str, *, accept: str) -> bytes:
        return (await self._request(image, path, accept=accept)).content

    async def _request(self, image: ImageRef, path: str, *, accept: str) -> httpx.Response:
        url = f"{self.base_url(image.registry)}{image.repository}/{path}"
        obj = f"image {image.registry}/{image.repository}:{image.reference}"
        key = (image.registry, image.repository)
        for attempt in range(2):
            headers = {"Accept": accept}
            if key in self._tokens:
                headers["Authorization"] = self._tokens[key]
            try:
                resp = await self._http.get(url, headers=headers)
            except httpx.HTTPError as exc:
                why = describe_http_error(exc)
                raise RegistryError(f"registry {image.registry}", why) from None
            if resp.status_code == 401 and attempt == 0:
                self._tokens[key] = await self._authorize(image, resp)
                continue
            if resp.status_code == 404:
                raise RegistryError(obj, "not found in the registry (wrong name or tag?)")
            if resp.status_code >= 400:
                raise RegistryError(obj, f"registry answered HTTP {resp.status_code}")
            return resp
        raise RegistryError(obj, "registry refused the credentials (HTTP 401)")

    async def _authorize(self, image: ImageRef, resp: httpx.Response) -> str:
        challenge = resp.headers.get("www-authenticate", "")
        creds = self.auth(image.registry)
        basic = httpx.BasicAuth(creds["username"], creds["password"]) if creds else None
        if challenge.lower().startswith("basic"):
            if creds is None:
                raise RegistryError(f"registry {image.registry}", "needs credentials")
            token = base64.b64encode(f"{creds['username']}:{creds['password']}".encode())
            return f"Basic {token.decode()}"
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryError(f"registry {image.registry}", f"bad challenge {challenge!r}")
        params.setdefault("scope", f"repository:{image.repository}:pull")
        try:
            tok = await self._http.get(realm, params=params, auth=basic or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            why = describe_http_error(exc)
            raise RegistryError(f"registry {image.registry}", f"token: {why}") from None
        if tok.status_code != 200:
            raise RegistryError(f"registry {image.registry}",
                                f"token endpoint answered HTTP {tok.status_code}")
        data = tok.json()
        return f"Bearer {data.get('token') or data.get('access_token')}"


def describe_http_error(exc: httpx.HTTPError) -> str:
    """Why an HTTP call failed, with the errno httpx hides (`unreachable (connection refused)`)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:  # httpx hides the errno behind "All connection attempts failed"
            if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
                return "unreachable (connection refused)"
            if isinstance(cause, OSError) and cause.strerror:
                return f"unreachable ({cause.strerror.lower()})"
            cause = cause.__cause__ or cause.__context__
        return f"unreachable ({text})"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return text
