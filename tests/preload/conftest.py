"""Engine A (a private dockerd) holding three tagged images that share base layers, and a
bundle extracted from it, shared by the preload tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgefleet.preload.bundle import Manifest
from edgefleet.preload.extract import extract
from tests.support import images
from tests.support.dockerd import Dockerd, new_dockerd

# refs name a registry nothing listens on: any pull of them fails
UNREACHABLE = "127.0.0.1:9"
TRICKY = ("RUN rm /bin/ls && mkdir -p /d/e && echo hi > /d/a && ln /d/a /d/b && echo q > /d/e/q"
          "\nRUN rm -rf /d && mkdir /d && echo c > /d/c && ln /d/c /d/h && ln -s /d/c /d/s"
          " && echo tricky > /marker")


@dataclass
class EngineA:
    """The source engine and what it holds."""

    dockerd: Dockerd
    base: str
    ids: dict[str, str] = field(default_factory=dict)
    """ref → image id, for every tag of the three images."""

    @property
    def data_root(self) -> Path:
        return self.dockerd.data_root

    def image_refs(self) -> list[str]:
        return [f"{self.base}/web:v1", f"{self.base}/worker:v1", f"{self.base}/tricky:v1"]


def need_root_and_dockerd() -> None:
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        if os.environ.get("CI"):
            pytest.fail("preload tests need root and dockerd (scripts/setup installs it)")
        pytest.skip("needs root and dockerd")


def engine_images(sock: str) -> dict[str, tuple[str, ...]]:
    """Image id → its tags, as `docker images` lists them."""
    with images.engine_client(sock) as c:
        return {i["Id"]: tuple(sorted(i.get("RepoTags") or ())) for i in
                c.get("/images/json").json()}


def run_in(sock: str, image: str, cmd: list[str]) -> tuple[int, str]:
    """Run a container to completion on an engine; its exit code and output."""
    with images.engine_client(sock) as c:
        r = c.post("/containers/create", json={"Image": image, "Cmd": cmd, "Tty": True})
        r.raise_for_status()
        cid = r.json()["Id"]
        try:
            c.post(f"/containers/{cid}/start").raise_for_status()
            code = c.post(f"/containers/{cid}/wait", timeout=60).json()["StatusCode"]
            out = c.get(f"/containers/{cid}/logs", params={"stdout": 1, "stderr": 1}).text
        finally:
            c.delete(f"/containers/{cid}", params={"force": 1})
    return int(code), out.replace("\r\n", "\n")


def snapshot(path: Path) -> dict[str, Any]:
    """Every entry under `path` with its type, size, mode and mtime (to prove it unchanged)."""
    if not path.exists():
        return {}
    out: dict[str, Any] = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="session")
def engine_a() -> Iterator[EngineA]:
    need_root_and_dockerd()
    d = new_dockerd()
    d.start()
    a = EngineA(dockerd=d, base=f"{UNREACHABLE}/pl{uuid.uuid4().hex[:8]}")
    try:
        web, worker, tricky = a.image_refs()
        a.ids[web] = images.build(web, sock=d.sock, dockerfile=images.busybox_dockerfile(
            extra="RUN echo web > /marker", cmd=["sh", "-c", "cat /marker; sleep 1000"]))
        a.ids[worker] = images.build(worker, sock=d.sock, files={"blob": os.urandom(12 << 20)},
                                     dockerfile=images.busybox_dockerfile(
                                         extra="COPY blob /blob\nRUN echo worker > /marker"))
        a.ids[tricky] = images.build(tricky, sock=d.sock,
                                     dockerfile=images.busybox_dockerfile(extra=TRICKY))
        with images.engine_client(d.sock) as c:
            c.post(f"/images/{web}/tag", params={"repo": f"{a.base}/web", "tag": "latest"}
                   ).raise_for_status()
        a.ids[f"{a.base}/web:latest"] = a.ids[web]
        yield a
    finally:
        d.cleanup()


@pytest.fixture(scope="session")
def bundle(engine_a: EngineA, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """The three images extracted from engine A while it runs (web by name, worker by full id,
    tricky by short id)."""
    out = tmp_path_factory.mktemp("bundle") / "out"
    web, worker, tricky = engine_a.image_refs()
    manifest = extract(data_root=engine_a.data_root, out=out,
                       refs=[web, engine_a.ids[worker],
                             engine_a.ids[tricky].removeprefix("sha256:")[:12]])
    return out, manifest


@pytest.fixture
def copy_of(tmp_path: Path) -> Iterator[Any]:
    """`copy_of(src)` → a `cp -a` copy of a directory (xattrs, devices and links kept)."""
    def make(src: Path) -> Path:
        dest = tmp_path / f"copy-{uuid.uuid4().hex[:6]}"
        subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
        return dest
    yield make
