"""Delta updates (issue 19), what a device checks before it uses one, against a real fleet
server (in a thread, SQLite), the real registry and a private dockerd:

- the delta's result must be the image the release names by digest: a delta that makes
  another image of the same repository (here: the server's cached delta for another release)
  is refused, nothing of it stays in the engine, and the device pulls the right image;
- a delta whose new layer decodes cleanly but not to its diffId is refused while it streams
  into the engine: the upload is aborted, the engine lists no such image afterwards;
- the disk-space gate counts what applying a delta writes (the uncompressed new layers, twice
  in the engine), not only what a pull would download: a highly compressible layer costs a
  pull almost nothing to download but a delta its full size."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from edgefleet.device import delta as device_delta
from edgefleet.device.delta import TRANSPORTS, DeltaEngine, DeltaSettings
from edgefleet.device.delta_layers import OldFiles
from edgefleet.device.delta_registry import LocalRegistry
from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.device.update_gate import UpdateGate
from edgefleet.engine.delta import MAGIC, DeltaError, compress, encode
from edgefleet.engine.storage import DataRoot
from edgefleet.plan.context import PlanContext
from edgefleet.plan.planner import plan
from edgefleet.server.delta.blobs import Registry
from edgefleet.server.delta.service import FORMAT, job_key
from tests.device.test_diskspace_update import loop_dockerd  # noqa: F401 - the fixture
from tests.plan.helpers import desired
from tests.server.conftest import DeviceInfo, new_fleet, new_tenant, register
from tests.server.helpers import make_release
from tests.support import images
from tests.support.dockerd import Dockerd, new_dockerd
from tests.support.fleet_server import RunningServer, run_server

pytestmark = [pytest.mark.engine]
MB = 1 << 20



@dataclass
class Setup:
    server: RunningServer
    device: DeviceInfo
    data_dir: Path
    refs: list[str]
    """Four releases' images of one repository: a 24 MB file of zeros, then three edits."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    data_dir = tmp_path_factory.mktemp("deltasrv")
    repo = f"deltacheck{uuid.uuid4().hex[:8]}/app"
    blob = bytearray(24 * MB)  # zeros: a pull downloads a few KiB, a delta writes 24 MB
    refs = []
    for n in range(4):
        blob[1000 + n] ^= 0xFF
        refs.append(images.pushed_with_file(repo, f"v{n}", bytes(blob)))
    with released(data_dir, refs) as setup:
        yield setup


@contextmanager
def released(data_dir: Path, refs: list[str]) -> Iterator[Setup]:
    """A server whose fleet has one release per image of `refs` (service "app"), and a
    registered device of that fleet."""
    with run_server(data_dir=data_dir, registry=images.REGISTRY) as server:
        tenant = new_tenant(server)
        fleet = new_fleet(tenant)
        device = register(server, fleet)
        for ref in refs:
            make_release(server, fleet_id=fleet.id, composition={"services": {"app": {}}},
                         refs={"app": ref})
        try:
            yield Setup(server=server, device=device, data_dir=data_dir, refs=refs)
        finally:
            device.http.close()
            tenant.http.close()


def counting_sendfile(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count what `os.sendfile` carries (bytes per call) for the rest of the test."""
    real, sent = os.sendfile, []

    def counted(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        n = real(out_fd, in_fd, offset, count)
        sent.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", counted)
    return sent


def _ready(s: Setup, src: str, dest: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        r = s.device.http.get("/api/v3/delta", params={"src": src, "dest": dest})
        if r.status_code == 200:
            return dict(r.json())
        assert r.status_code == 202 and time.monotonic() < deadline, r.text
        time.sleep(0.3)


@pytest.fixture
def engine_dockerd() -> Iterator[Dockerd]:
    d = new_dockerd()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


async def _engine(s: Setup, sock: str, tmp_path: Path) -> AsyncIterator[DeltaEngine]:
    store = Store(path=tmp_path / "device.sqlite")
    (tmp_path / "device").mkdir()
    engine = DeltaEngine(socket=sock, scope=f"dc{uuid.uuid4().hex[:6]}",
                         data_dir=tmp_path / "device", log=LogSink(store=store, echo=False))
    try:
        await engine.pull(s.refs[0])  # deltas off: a plain pull of the first release
        engine.settings = lambda: DeltaSettings(endpoint=s.server.url, api_key=s.device.api_key)
        yield engine
    finally:
        await engine.close()
        store.close()


async def test_a_delta_that_does_not_make_the_released_image_is_refused(
    setup: Setup, engine_dockerd: Dockerd, tmp_path: Path
) -> None:
    a, b, c, _ = setup.refs
    made = _ready(setup, a, b)
    # the server's cache answers the a -> c question with the a -> b delta (a valid delta,
    # every layer and the config check out; only the image it makes is not c)
    deltas = setup.data_dir / "deltas"
    key = job_key(a, c)
    shutil.copy(deltas / f"{made['key']}.delta", deltas / f"{key}.delta")
    meta = {k: v for k, v in made.items() if k != "location"}
    (deltas / f"{key}.json").write_text(json.dumps({**meta, "key": key, "dest": c}))
    async for engine in _engine(setup, engine_dockerd.sock, tmp_path):
        got = await engine.pull(c)
        with images.engine_client(engine_dockerd.sock) as e:
            r = e.get(f"/images/{c}/json")
            assert r.status_code == 200 and got == r.json()["Id"], \
                f"the device must end up with the image the release names, not {got}"
            assert e.get(f"/images/{made['image_id']}/json").status_code == 404, \
                "nothing of the refused delta stays in the engine"
        assert engine.stats["fallbacks"] == 1 and engine.stats["applied"] == 0
        assert "the release names" in engine.stats["last_fallback"], engine.stats
        assert c not in engine._loaded


async def test_the_space_gate_counts_what_applying_the_delta_writes(
    setup: Setup, loop_dockerd: Dockerd, tmp_path: Path  # noqa: F811
) -> None:
    a, b, _, _ = setup.refs
    job = _ready(setup, a, b)
    assert int(str(job["new_bytes"])) > 24 * MB and int(str(job["pull_bytes"])) < MB
    async for engine in _engine(setup, loop_dockerd.sock, tmp_path):
        gate = UpdateGate(engine=engine, logs=engine.log, cap_s=4)
        try:
            want = desired({"a1": {"app": {"image": b}}}, commit="c2")
            observed = await engine.observe()
            first = plan(observed=observed, desired=want, context=PlanContext())
            free = shutil.disk_usage(loop_dockerd.data_root).free
            assert free < 2 * 24 * MB, f"the loop disk has {free} bytes free"
            blocked = await gate.blocked(the_plan=first, desired=want, observed=observed,
                                         now_ms=1_000_000)
            assert list(blocked) == [b], "a pull would fit, applying the delta would not"
            assert "not enough space for release c2" in blocked[b]
        finally:
            await gate.close()


def _tampered(s: Setup, src: str, dest: str) -> None:
    """Put on the server, as the ready src -> dest delta, one whose new layer is a valid zstd
    frame of the right size that decodes to the layer with one byte changed."""
    reg = Registry(images.REGISTRY)
    try:
        a, b = reg.image(src), reg.image(dest)
        out = io.BytesIO()
        header = encode(src_id=a.image_id, src_config=a.config, dest_config=b.config,
                        src_stream=lambda d: reg.layer_stream(a, d),
                        dest_stream=lambda d: reg.layer_stream(b, d), out=out,
                        dest_manifest=b.manifest)
        frames = []
        plans = []
        for plan in header.layers:
            if plan.kind == "zstd":
                ref = b"".join(reg.layer_stream(a, d) for d in plan.ref)
                data = bytearray(reg.layer_stream(b, plan.diff_id))
                data[len(data) // 2] ^= 0x01
                frames.append(compress(ref, bytes(data)))
                plan = replace(plan, length=len(frames[-1]))
            plans.append(plan)
    finally:
        reg.close()
    raw = replace(header, layers=tuple(plans)).to_json()
    body = MAGIC + len(raw).to_bytes(4, "big") + raw + b"".join(frames)
    key = job_key(src, dest)
    (s.data_dir / "deltas" / f"{key}.delta").write_bytes(body)
    (s.data_dir / "deltas" / f"{key}.json").write_text(json.dumps({
        "key": key, "src": src, "dest": dest, "status": "ready", "image_id": header.dest,
        "format": FORMAT,
        "size": len(body), "new_bytes": sum(p.size for p in plans if p.kind == "zstd")}))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_layer_that_does_not_hash_to_its_diff_id_is_never_loaded(
    setup: Setup, engine_dockerd: Dockerd, tmp_path: Path, transport: str
) -> None:
    """Through either transport: the layer's stream is cut short before its last chunk (an
    archive never completed; a blob the engine never completes), so no image, no layer and,
    for the registry transport, no carrier image or reference stays in the engine."""
    a, _, _, d = setup.refs
    (setup.data_dir / "deltas").mkdir(exist_ok=True)
    _tampered(setup, a, d)
    async for engine in _engine(setup, engine_dockerd.sock, tmp_path):
        engine.transports = (transport,)
        settings = engine.settings()
        assert settings is not None
        source = await engine._source(d)
        assert source is not None
        with pytest.raises(DeltaError, match="not to its diffId"):
            await engine._via_delta(d, source, settings)
        with images.engine_client(engine_dockerd.sock) as e:
            listed = e.get("/images/json", params={"all": "1"}).json()
            assert [i["Id"] for i in listed] == [source[1]], \
                "only the source image: nothing of the refused delta"
            assert listed[0]["RepoDigests"] == [a], "no reference of the local registry"
        got = await engine.pull(d)  # as the supervisor does it: refused, then pulled
        assert engine.stats["fallbacks"] == 1 and "diffId" in engine.stats["last_fallback"]
        with images.engine_client(engine_dockerd.sock) as e:
            assert e.get(f"/images/{d}/json").json()["Id"] == got


def test_a_delta_cached_by_an_older_server_is_made_again(setup: Setup) -> None:
    """A delta file cached before the header carried the manifest is not served (devices
    would refuse it): the server makes it again."""
    _, b, c, _ = setup.refs
    key = job_key(b, c)
    (setup.data_dir / "deltas").mkdir(exist_ok=True)
    (setup.data_dir / "deltas" / f"{key}.delta").write_bytes(b"old!")
    (setup.data_dir / "deltas" / f"{key}.json").write_text(json.dumps({
        "key": key, "src": b, "dest": c, "status": "ready", "size": 4}))
    job = _ready(setup, b, c)
    assert job["format"] == FORMAT and job["size"] != 4, job


def _state(sock: str, image_id: str) -> tuple[list[str], dict[str, object]]:
    """Every image id in the engine, and what it says of one image that a caller could use."""
    with images.engine_client(sock) as e:
        ids = sorted(i["Id"] for i in e.get("/images/json", params={"all": "1"}).json())
        info = e.get(f"/images/{image_id}/json").json()
    return ids, {k: info[k] for k in ("Id", "RepoTags", "RepoDigests", "Config", "RootFS")}


async def test_the_registry_transport_leaves_the_image_as_the_load_transport_does(
    setup: Setup, engine_dockerd: Dockerd, tmp_path: Path
) -> None:
    """The engine pulls the new layers from the supervisor's loopback registry: the image
    ends up with the release's image id, untagged and without any digest, exactly as after
    the load transport, and nothing of the local registry (carrier image, reference) stays;
    the supervisor finds the image under the release's ref."""
    a, b, _, _ = setup.refs
    job = _ready(setup, a, b)
    async for engine in _engine(setup, engine_dockerd.sock, tmp_path):
        with images.engine_client(engine_dockerd.sock) as e:  # as a crash mid-apply leaves it
            e.post(f"/images/{a}/tag", params={"repo": "127.0.0.1:9/edgefleet-delta-0",
                                                "tag": "left"}).raise_for_status()
        seen = {}
        for transport in ("registry", "load"):
            engine.transports = (transport,)
            got = await engine.pull(b)
            assert got == job["image_id"], f"{transport}: {got}"
            assert engine.stats["via"][transport] == 1 and engine.stats["fallbacks"] == 0, \
                engine.stats
            ids, seen[transport] = _state(engine_dockerd.sock, got)
            with images.engine_client(engine_dockerd.sock) as e:
                assert e.get("/images/127.0.0.1:9/edgefleet-delta-0:left/json"
                             ).status_code == 404, "a carrier's reference left is removed"
            assert len(ids) == 2 and got in ids, f"{transport}: only a and b stay: {ids}"
            found = (await engine.observe()).image_for(b)
            assert found is not None and found.id == got
            with images.engine_client(engine_dockerd.sock) as e:
                assert e.delete(f"/images/{got}").status_code == 200
        assert seen["registry"] == seen["load"]
        assert seen["registry"]["RepoTags"] == [] and seen["registry"]["RepoDigests"] == []


async def test_an_engine_that_cannot_reach_the_local_registry_gets_the_archive(
    setup: Setup, engine_dockerd: Dockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the engine cannot reach the supervisor's 127.0.0.1 (e.g. it runs in another
    network namespace), the registry transport fails without a request reaching it: the
    load transport takes over at once, it is logged and counted, and the registry transport
    is not tried again by this process."""
    a, b, c, _ = setup.refs
    _ready(setup, a, b)
    _ready(setup, a, c)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]

    class Unreachable(LocalRegistry):
        def __init__(self, **kw: object) -> None:
            super().__init__(**kw)  # type: ignore[arg-type]
            self.ref = f"127.0.0.1:{port}/" + self.ref.split("/", 1)[1]

    monkeypatch.setattr(device_delta, "LocalRegistry", Unreachable)
    try:
        async for engine in _engine(setup, engine_dockerd.sock, tmp_path):
            engine.transports = ("registry", "load")
            assert await engine.pull(b) == _ready(setup, a, b)["image_id"]
            assert engine.stats["via"] == {"load": 1, "registry": 0}, engine.stats
            assert engine.stats["transport_fallbacks"] == 1 and engine.stats["fallbacks"] == 0
            assert str(port) in engine.stats["last_transport_fallback"]
            assert engine._registry_ok is False
            await engine.pull(c)  # straight to the archive: no second failed pull
            assert engine.stats["via"] == {"load": 2, "registry": 0}
            assert engine.stats["transport_fallbacks"] == 1
    finally:
        closed.close()


async def test_a_tar_plan_copies_only_files_the_device_own_layer_lists(
    setup: Setup, engine_dockerd: Dockerd, tmp_path: Path
) -> None:
    """The files a "tar" plan copies come from the delta (the server): the device opens one
    only when its own tar-split of that layer lists that name with that size, so a delta
    cannot make it read anything else (another path, a symlink, a size it does not have)."""
    a = setup.refs[0]
    async for engine in _engine(setup, engine_dockerd.sock, tmp_path):
        image_id = (await engine.image_inspect(a))["Id"]
        files = OldFiles(DataRoot(engine_dockerd.data_root), image_id)
        top = list(files.layers)[-1]
        size = 24 * MB
        os.close(files.open(top, "app.bin", size))  # the real one
        os.close(files.open(top, "./app.bin", size))  # (names are normalised)
        for diff_id, name, n, why in (
                (top, "app.bin", size + 1, "no file"), (top, "etc/passwd", 0, "no file"),
                (top, "../../../../etc/passwd", 10, "escapes"),
                ("sha256:" + "0" * 64, "app.bin", size, "no layer")):
            with pytest.raises(DeltaError, match=why):
                files.open(diff_id, name, n)
