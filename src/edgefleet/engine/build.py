"""Build images on a local engine from a directory (Engine API `POST /build` over the unix
socket), and ask the engine where its data root is."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from edgefleet.engine import dockerhttp
from edgefleet.engine.errors import EngineError, EngineUnavailable
from edgefleet.model.ignore import IgnoreRules
from edgefleet.model.ignore import parse as parse_ignore

_client = dockerhttp.sync_client


def ignore_rules(directory: Path) -> IgnoreRules:
    """The `.dockerignore` rules of a build context directory (none without the file)."""
    path = directory / ".dockerignore"
    return parse_ignore(path.read_text(errors="replace") if path.is_file() else "")


def context_files(directory: Path, *, rules: IgnoreRules,
                  always: frozenset[str] = frozenset()) -> list[str]:
    """Context-relative paths of every file and directory that goes into the build context;
    paths in `always` (the Dockerfile, .dockerignore) are sent anyway, as Docker does.
    Links are listed, never followed."""
    keep: list[str] = []
    prune = not rules.has_exclusions
    for dirpath, dirnames, filenames in os.walk(directory):
        rel_dir = os.path.relpath(dirpath, directory)
        for name in sorted(dirnames) + sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in always or not rules.ignored(rel):
                keep.append(rel)
            elif prune and name in dirnames:  # nothing under it can come back
                dirnames.remove(name)
        dirnames.sort()
    return keep


def context_tar(*, directory: Path) -> bytes:
    """A build context: the directory as a tar, minus what `.dockerignore` leaves out."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in context_files(directory, rules=ignore_rules(directory),
                                 always=frozenset({"Dockerfile", ".dockerignore"})):
            tar.add(directory / rel, arcname=rel, recursive=False)
    return buf.getvalue()


def build_image(*, socket: str, context: bytes, tag: str, dockerfile: str = "Dockerfile",
                buildargs: Mapping[str, str] | None = None,
                on_line: Callable[[str], None] | None = None) -> str:
    """Build and tag an image; returns its id. Raises EngineError with the build's message."""
    params = {"t": tag, "rm": "1", "forcerm": "1", "dockerfile": dockerfile}
    if buildargs:
        params["buildargs"] = json.dumps(dict(buildargs))
    try:
        with _client(socket) as c, c.stream(
                "POST", "/build", params=params, content=context,
                headers={"Content-Type": "application/x-tar"}) as r:
            if r.status_code >= 400:
                r.read()
                raise EngineError(tag, f"build refused: {r.text.strip()}")
            for line in r.iter_lines():
                if not line.strip():
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    raise EngineError(tag, f"build failed: {str(msg['error']).strip()}")
                if on_line is not None and msg.get("stream", "").strip():
                    on_line(str(msg["stream"]).rstrip())
            info = c.get(f"/images/{tag}/json")
            info.raise_for_status()
            return str(info.json()["Id"])
    except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
        raise EngineUnavailable(socket, f"engine not reachable: {exc}") from None


def data_root(*, socket: str) -> Path:
    """The engine's data root (`docker info` DockerRootDir) and storage driver check."""
    try:
        with _client(socket) as c:
            info = c.get("/info").json()
    except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
        raise EngineUnavailable(socket, f"engine not reachable: {exc}") from None
    if info.get("Driver") != "overlay2":
        raise EngineError(socket, f"storage driver {info.get('Driver')!r}: preload needs overlay2")
    return Path(info["DockerRootDir"])


def tag_image(*, socket: str, image: str, ref: str) -> None:
    """Tag `image` (an id or ref) as `ref` (`repo:tag`)."""
    repo, _, tag = ref.rpartition(":")
    with _client(socket) as c:
        r = c.post(f"/images/{image}/tag", params={"repo": repo, "tag": tag})
        if r.status_code >= 400:
            raise EngineError(ref, f"tag failed: {r.text.strip()}")


def untag(*, socket: str, ref: str) -> None:
    """Remove one tag (the image stays while other tags name it)."""
    with _client(socket) as c:
        c.delete(f"/images/{ref}", params={"noprune": "1"})
