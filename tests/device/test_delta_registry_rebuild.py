"""The registry transport of a delta (device/delta_registry.py) on the shape of bench/delta.py's
second update, against a real fleet server (in a thread), the real registry and a private
dockerd: a dependency layer rebuilt with identical contents and new timestamps, under an
unchanged application layer. The new layer is a "tar" plan whose large old files go to the
engine by sendfile, the application layer is re-served from the device's own data root (its
tar-split), its large files by sendfile too.

- The engine ends up with the release's image, by the same id, untagged and without digest,
  and the large files did go by sendfile.
- A file in the data root whose bytes changed (same size) is caught by the supervisor's own
  hash, in both places a file is sent from: the delta is refused, nothing of it stays in the
  engine, and the device still gets the image by a pull."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgefleet.engine.delta import DeltaError
from edgefleet.engine.storage import DataRoot
from tests.device.test_delta_checks import Setup, _engine, _ready, counting_sendfile, released
from tests.support import images
from tests.support.dockerd import Dockerd, new_dockerd

pytestmark = [pytest.mark.engine]
KB = 1 << 10
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
ENV DEPS_BUILD={n}
COPY deps/ /deps/
COPY app/ /app/
CMD ["/bin/busybox", "sleep", "3600"]
"""
FILES = {"deps/big.so": 600 * KB, "deps/mid.so": 30 * KB, "deps/tiny.so": 100,
         "app/data.bin": 900 * KB, "app/small.txt": 2 * KB}


@dataclass
class Built:
    setup: Setup
    old_files: dict[str, bytes]


def _context(n: int, contents: dict[str, bytes], deps_mtime: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(images.BUSYBOX, arcname="busybox")
        for name, data in {"Dockerfile": DOCKERFILE.format(n=n).encode(), **contents}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            info.mtime = deps_mtime if name.startswith("deps/") else 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _pushed(repo: str, n: int, contents: dict[str, bytes], deps_mtime: int) -> str:
    ref = f"{images.REGISTRY}/{repo}:v{n}"
    with images.engine_client() as c:
        r = c.post("/build", params={"t": ref, "rm": "1", "forcerm": "1"},
                   content=_context(n, contents, deps_mtime),
                   headers={"Content-Type": "application/x-tar"})
        r.raise_for_status()
        assert '"error' not in r.text, r.text[-500:]
    images.push(ref)
    with images.engine_client() as c:
        digests = c.get(f"/images/{ref}/json").json()["RepoDigests"]
    images.remove_local(ref)
    return str(next(d for d in digests if d.startswith(f"{images.REGISTRY}/{repo}@")))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    data_dir = tmp_path_factory.mktemp("deltareb")
    repo = f"deltarebuild{uuid.uuid4().hex[:8]}/app"
    contents = {name: os.urandom(size) for name, size in FILES.items()}
    refs = [_pushed(repo, 1, contents, 1_700_000_000),
            _pushed(repo, 2, contents, 1_700_003_600)]  # same bytes, new timestamps
    with released(data_dir, refs) as setup:
        yield Built(setup, contents)


@pytest.fixture
def engine_dockerd() -> Iterator[Dockerd]:
    d = new_dockerd()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


async def test_a_rebuilt_lower_layer_comes_through_the_registry_by_sendfile(
    built: Built, engine_dockerd: Dockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = built.setup.refs
    job = _ready(built.setup, a, b)
    sent = counting_sendfile(monkeypatch)
    async for engine in _engine(built.setup, engine_dockerd.sock, tmp_path):
        engine.transports = ("registry",)
        got = await engine.pull(b)
        assert got == job["image_id"] and engine.stats["via"]["registry"] == 1, engine.stats
        assert engine.stats["fallbacks"] == 0, engine.stats
        with images.engine_client(engine_dockerd.sock) as e:
            info = e.get(f"/images/{got}/json").json()
            assert info["RepoTags"] == [] and info["RepoDigests"] == []
            assert len(e.get("/images/json", params={"all": "1"}).json()) == 2
    # deps/big.so in the rebuilt layer and app/data.bin in the re-served one
    assert sum(sent) >= FILES["deps/big.so"] + FILES["app/data.bin"], sent


@pytest.mark.parametrize("name", ["deps/big.so", "app/data.bin"])
async def test_a_changed_file_in_the_data_root_is_refused_through_the_registry(
    built: Built, engine_dockerd: Dockerd, tmp_path: Path, name: str
) -> None:
    """deps/big.so: copied into the new layer (hashed by its hashing thread); app/data.bin:
    re-served in the unchanged layer (hashed before it is sent)."""
    a, b = built.setup.refs
    _ready(built.setup, a, b)
    async for engine in _engine(built.setup, engine_dockerd.sock, tmp_path):
        engine.transports = ("registry",)
        src_id = (await engine.image_inspect(a))["Id"]
        root = DataRoot(engine_dockerd.data_root)
        path = next(Path(x.diff_dir) / name for x in root.image(src_id).layers
                    if (Path(x.diff_dir) / name).exists())
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))  # same size: only a hash tells
        settings = engine.settings()
        source = await engine._source(b)
        assert settings is not None and source is not None
        with pytest.raises(DeltaError, match=r"diffId|rebuilds to"):
            await engine._via_delta(b, source, settings)
        with images.engine_client(engine_dockerd.sock) as e:
            listed = e.get("/images/json", params={"all": "1"}).json()
            assert [i["Id"] for i in listed] == [src_id], "nothing of the refused delta stays"
        assert engine.stats["via"]["registry"] == 0
        got = await engine.pull(b)  # as the supervisor does it: refused, then pulled
        assert engine.stats["fallbacks"] == 1, engine.stats
        with images.engine_client(engine_dockerd.sock) as e:
            assert e.get(f"/images/{b}/json").json()["Id"] == got
        assert engine.stats["applied"] == 0
