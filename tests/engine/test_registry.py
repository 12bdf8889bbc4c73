"""The registry client against the real local registry, and the space estimate."""

from __future__ import annotations

import hashlib
import json
import socket

import httpx
import pytest

from edgefleet.engine.registry import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    ImageManifest,
    ImageRef,
    Layer,
    NoMatchingPlatform,
    Platform,
    RegistryClient,
    RegistryError,
    is_insecure,
)
from edgefleet.engine.space import EXPANSION, IN_FLIGHT, estimate
from tests.support import images

AMD64 = Platform(os="linux", architecture="amd64")


def test_refs_are_normalised_like_the_engine_does() -> None:
    assert ImageRef.parse("busybox") == ImageRef("registry-1.docker.io", "library/busybox",
                                                 "latest")
    assert ImageRef.parse("127.0.0.1:5055/a/b:v1") == ImageRef("127.0.0.1:5055", "a/b", "v1")
    assert ImageRef.parse("localhost/x@sha256:ab").reference == "sha256:ab"
    assert ImageRef.parse("user/repo:t") == ImageRef("registry-1.docker.io", "user/repo", "t")
    assert is_insecure(registry="127.0.0.1:5055", insecure=())
    assert is_insecure(registry="10.1.2.3:5000", insecure=("10.0.0.0/8",))
    assert not is_insecure(registry="registry.example.com", insecure=("10.0.0.0/8",))
    assert Platform.from_engine(os_type="linux", machine="armv7l") == Platform(
        "linux", "arm", "v7")


def test_estimate_counts_only_missing_layers_once_with_the_expansion_factor() -> None:
    a = ImageManifest(ref="a", digest="", config_digest="", config_size=100, layers=(
        Layer("sha256:l1", 1000, "sha256:d1"), Layer("sha256:l2", 5000, "sha256:d2")))
    b = ImageManifest(ref="b", digest="", config_digest="", config_size=50, layers=(
        Layer("sha256:l2", 5000, "sha256:d2"), Layer("sha256:l3", 300, "sha256:d3")))
    need = estimate(manifests=[a, b], present={"sha256:d1"})
    assert need.download_bytes == 5300 and need.missing_layers == 2
    assert need.per_image == {"a": 5000, "b": 300}
    in_flight = sum(sorted([5000, 300], reverse=True)[:IN_FLIGHT])
    assert need.need_bytes == int(EXPANSION * 5300) + in_flight + 150
    assert estimate(manifests=[a], present={"sha256:d1", "sha256:d2"}).need_bytes == 100


async def test_manifest_of_a_pushed_image_matches_the_engine(registry: str, unique: str) -> None:
    img = images.build_and_push(f"reg-{unique}", "v1", extra="RUN echo hi > /hello",
                                keep_local=True)
    try:
        with images.engine_client() as c:
            layers = c.get(f"/images/{img.ref}/json").json()["RootFS"]["Layers"]
        client = RegistryClient(platform=AMD64)
        try:
            m = await client.manifest(ref=img.ref)
        finally:
            await client.close()
        assert [x.diff_id for x in m.layers] == layers
        assert all(x.size > 0 and x.digest.startswith("sha256:") for x in m.layers)
        assert m.config_digest == img.id
    finally:
        images.remove_local(img.ref)


def _manifest_digest(registry: str, repo: str) -> tuple[str, int]:
    head = httpx.get(f"http://{registry}/v2/{repo}/manifests/v1",
                     headers={"Accept": DOCKER_MANIFEST})
    return head.headers["docker-content-digest"], len(head.content)


def _put_index(registry: str, repo: str, digest: str, size: int) -> str:
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": size,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": size,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}
    body = json.dumps(index).encode()
    r = httpx.put(f"http://{registry}/v2/{repo}/manifests/multi", content=body,
                  headers={"Content-Type": OCI_INDEX})
    r.raise_for_status()
    return "sha256:" + hashlib.sha256(body).hexdigest()


async def test_an_index_resolves_to_this_platform_or_is_refused(registry: str,
                                                                 unique: str) -> None:
    img = images.build_and_push(f"reg-{unique}", "v1")
    digest, size = _manifest_digest(registry, f"reg-{unique}")
    _put_index(registry, f"reg-{unique}", digest, size)
    ref = f"{registry}/reg-{unique}:multi"
    client = RegistryClient(platform=AMD64)
    try:
        m = await client.manifest(ref=ref)
        assert m.digest == digest and m.config_digest == img.id
    finally:
        await client.close()
    arm7 = RegistryClient(platform=Platform(os="linux", architecture="arm", variant="v7"))
    try:
        with pytest.raises(NoMatchingPlatform, match=r"no variant for linux/arm/v7 \(it has: "
                                                      r"linux/amd64, linux/arm64/v8\)"):
            await arm7.manifest(ref=ref)
    finally:
        await arm7.close()


async def test_unreachable_registry_and_unknown_tag_are_named(registry: str,
                                                              unique: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RegistryClient(platform=AMD64)
    try:
        with pytest.raises(RegistryError, match=r"registry 127.0.0.1:\d+: unreachable "
                                                r"\(connection refused\)"):
            await client.manifest(ref=f"127.0.0.1:{port}/x:y")
        with pytest.raises(RegistryError, match="not found in the registry"):
            await client.manifest(ref=f"{registry}/nothing-{unique}:v9")
    finally:
        await client.close()
