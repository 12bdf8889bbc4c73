"""Build test images FROM scratch with the host's static busybox and push them to the local
registry, so that every pull in the tests is a real pull. Nothing is downloaded from elsewhere."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass

import httpx

BUSYBOX = "/bin/busybox"
REGISTRY = os.environ.get("EDGEFLEET_REGISTRY", "127.0.0.1:5055")
DOCKER_SOCK = os.environ.get("EDGEFLEET_TEST_DOCKER_SOCK", "/var/run/docker.sock")


def engine_client(sock: str = DOCKER_SOCK, timeout: float = 300) -> httpx.Client:
    """A plain HTTP client for the Engine API over its unix socket (test setup only)."""
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=sock), base_url="http://docker", timeout=timeout
    )


@dataclass(frozen=True)
class BuiltImage:
    """An image built for a test and pushed to the local registry."""

    ref: str
    """`<registry>/<repo>:<tag>`, as a target state names it."""
    id: str


def _context(dockerfile: str, files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(BUSYBOX, arcname="busybox")
        for name, content in {"Dockerfile": dockerfile, **files}.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def busybox_dockerfile(*, cmd: list[str] | None = None, extra: str = "") -> str:
    """A Dockerfile FROM scratch with busybox installed as /bin/* and the given CMD."""
    lines = [
        "FROM scratch",
        "COPY busybox /bin/busybox",
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
        "RUN mkdir -p /tmp /data /etc && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd",
    ]
    if extra:
        lines.append(extra)
    default = ["sh", "-c", "trap exit TERM; while true; do sleep 1; done"]  # stops at once
    lines.append(f"CMD {json.dumps(cmd or default)}")
    return "\n".join(lines) + "\n"


def build(
    tag: str,
    *,
    dockerfile: str | None = None,
    files: dict[str, bytes | str] | None = None,
    sock: str = DOCKER_SOCK,
) -> str:
    """Build an image on the engine behind `sock`; returns its id."""
    body = _context(dockerfile or busybox_dockerfile(), files or {})
    with engine_client(sock) as c:
        r = c.post(
            "/build",
            params={"t": tag, "rm": "1", "forcerm": "1"},
            content=body,
            headers={"Content-Type": "application/x-tar"},
        )
        r.raise_for_status()
        for line in r.text.splitlines():
            if line.strip() and "error" in json.loads(line):
                raise RuntimeError(f"build of {tag} failed: {line}")
        info = c.get(f"/images/{tag}/json")
        info.raise_for_status()
        return str(info.json()["Id"])


def push(ref: str, *, sock: str = DOCKER_SOCK) -> None:
    """Push `ref` (which must name the local registry) from the engine to the registry."""
    name, _, tag = ref.rpartition(":")
    auth = base64.b64encode(b"{}").decode()
    with engine_client(sock) as c:
        r = c.post(
            f"/images/{name}/push", params={"tag": tag}, headers={"X-Registry-Auth": auth}
        )
        r.raise_for_status()
        for line in r.text.splitlines():
            if line.strip() and "error" in json.loads(line):
                raise RuntimeError(f"push of {ref} failed: {line}")


def remove_local(ref: str, *, sock: str = DOCKER_SOCK) -> None:
    """Delete an image from the engine (so the next use is a real pull)."""
    with engine_client(sock) as c:
        c.delete(f"/images/{ref}", params={"force": "1"})


def build_and_push(
    repo: str,
    tag: str = "latest",
    *,
    cmd: list[str] | None = None,
    extra: str = "",
    files: dict[str, bytes | str] | None = None,
    keep_local: bool = False,
    sock: str = DOCKER_SOCK,
) -> BuiltImage:
    """Build a busybox image, push it to the local registry, and (by default) drop the local
    copy so a supervisor must pull it."""
    ref = f"{REGISTRY}/{repo}:{tag}"
    image_id = build(ref, dockerfile=busybox_dockerfile(cmd=cmd, extra=extra), files=files,
                     sock=sock)
    push(ref, sock=sock)
    if not keep_local:
        remove_local(ref, sock=sock)
    return BuiltImage(ref=ref, id=image_id)


def pushed_with_file(repo: str, tag: str, blob: bytes) -> str:
    """Build a busybox image with `blob` as /app.bin, push it, drop the local copy, and return
    its by-digest reference (`REGISTRY/repo@sha256:...`), as a release names images."""
    ref = f"{REGISTRY}/{repo}:{tag}"
    build(ref, files={"app.bin": blob},
          dockerfile=busybox_dockerfile(extra="COPY app.bin /app.bin"))
    push(ref)
    with engine_client() as c:
        digests = c.get(f"/images/{ref}/json").json()["RepoDigests"]
    remove_local(ref)
    return str(next(d for d in digests if d.startswith(f"{REGISTRY}/{repo}@")))
