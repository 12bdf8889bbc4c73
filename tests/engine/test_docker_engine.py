"""DockerEngine against the real dockerd and the local registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from edgefleet.engine.docker import DockerEngine
from edgefleet.engine.errors import Conflict, EngineUnavailable, NotFound, PullFailed
from edgefleet.model import naming
from edgefleet.model.engine_events import PullProgress
from edgefleet.model.engine_state import ContainerState
from edgefleet.model.service import (
    Healthcheck,
    Mount,
    NetworkAttachment,
    NetworkSpec,
    ServiceSpec,
    VolumeSpec,
)
from tests.device.conftest import cleanup_scope
from tests.support import images

pytestmark = pytest.mark.engine


@pytest.fixture
async def engine(registry: str, unique: str) -> AsyncIterator[DockerEngine]:
    eng = DockerEngine(scope=f"e{unique}")
    try:
        yield eng
    finally:
        await eng.close()
        cleanup_scope(f"e{unique}")


def svc(engine: DockerEngine, name: str, image: str, unique: str, **kw: object) -> ServiceSpec:
    labels = {naming.SUPERVISED: "true", naming.APP_UUID: f"a{unique}",
              naming.SERVICE_NAME: f"{name}{unique}", naming.SCOPE: engine.scope}
    return ServiceSpec(app_id=3, app_uuid=f"a{unique}", service_name=f"{name}{unique}",
                       image=image, labels=labels, **kw)


async def test_pull_reports_progress_and_returns_the_id(engine: DockerEngine,
                                                        unique: str) -> None:
    built = images.build_and_push(f"eng-pull-{unique}", "v1",
                                  extra="RUN dd if=/dev/urandom of=/blob bs=1M count=4")
    seen: list[PullProgress] = []
    image_id = await engine.pull(built.ref, progress=seen.append)
    assert image_id == built.id
    assert seen and seen[-1].total > 0
    done = [p.downloaded for p in seen]
    assert done == sorted(done) and done[-1] == seen[-1].total
    images.remove_local(built.ref)


async def test_unknown_image_is_a_pull_failure_naming_it(engine: DockerEngine) -> None:
    with pytest.raises(PullFailed, match="no-such-image"):
        await engine.pull(f"{images.REGISTRY}/no-such-image:1")


async def test_dead_socket_is_engine_unavailable(tmp_path: object) -> None:
    eng = DockerEngine(socket="/tmp/edgefleet-no-engine.sock", scope="x")
    with pytest.raises(EngineUnavailable, match="dockerd"):
        await eng.observe()
    await eng.close()


async def test_lifecycle_observe_restart_rename_events_logs(engine: DockerEngine,
                                                            unique: str) -> None:
    built = images.build_and_push("eng-life", "v1", keep_local=True, cmd=[
        "sh", "-c", "echo out; echo err >&2; while true; do sleep 1; done"])
    net = NetworkSpec(app_uuid=f"a{unique}", app_id=3, name="default")
    await engine.create_network(net)
    events: list[str] = []

    async def watch() -> None:
        async for ev in engine.events():
            if ev.type == "container":
                events.append(ev.action)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.3)
    main = svc(engine, "main", built.ref, unique, network_mode=net.engine_name,
               networks={net.engine_name: NetworkAttachment(aliases=("main",))})
    cid = await engine.create_container(main)
    await engine.start_container(cid)
    side = svc(engine, "side", built.ref, unique, network_mode=f"service:main{unique}")
    sid = await engine.create_container(side, network_from=cid)
    await engine.start_container(sid)
    state = await engine.observe()
    mine = {c.id: c for c in state.containers}
    assert set(mine) == {cid, sid}
    assert mine[cid].status == "running" and mine[cid].networks == (net.engine_name,)
    assert mine[cid].config_hash == main.config_hash()
    assert any(n.name == net.engine_name for n in state.networks)
    await engine.restart_container(cid, timeout_s=1)
    await engine.rename_container(cid, new_name=f"renamed{unique}")
    again = {c.id: c for c in (await engine.observe()).containers}
    assert again[cid].name == f"renamed{unique}", "restart keeps the container, rename names it"
    lines = [line async for line in engine.logs(cid, follow=False)]
    assert ("out", False) in [(x.message, x.is_stderr) for x in lines]
    assert ("err", True) in [(x.message, x.is_stderr) for x in lines]
    assert all(x.timestamp_ms > 0 for x in lines)
    await engine.stop_container(sid, timeout_s=1)
    await asyncio.sleep(0.5)
    watcher.cancel()
    assert "start" in events and "die" in events


async def test_a_same_named_volume_that_is_not_ours_is_a_conflict_and_kept(
        engine: DockerEngine, unique: str) -> None:
    vol = VolumeSpec(app_uuid=f"a{unique}", app_id=int(unique[:6], 16) + 1000, name="data")
    with images.engine_client() as c:
        made = c.post("/volumes/create", json={"Name": vol.engine_name,
                                               "Labels": {"owner": "someone"}})
        assert made.status_code == 201
        try:
            with pytest.raises(Conflict, match="belongs to no edgefleet supervisor"):
                await engine.create_volume(vol)
            assert (await engine.observe()).volumes == ()
            kept = c.get(f"/volumes/{vol.engine_name}").json()
            assert kept["Labels"] == {"owner": "someone"}
        finally:
            c.delete(f"/volumes/{vol.engine_name}")


async def test_observe_exit_code_health_restart_count_and_volume(engine: DockerEngine,
                                                                 unique: str) -> None:
    built = images.build_and_push(f"eng-obs-{unique}", "v1", keep_local=True,
                                  cmd=["sh", "-c", "exit 3"])
    vol = VolumeSpec(app_uuid=f"a{unique}", app_id=3, name="data")
    await engine.create_volume(vol)
    quits = svc(engine, "quits", built.ref, unique, restart="no",
                mounts=(Mount(type="volume", source=vol.engine_name, target="/data"),))
    loops = svc(engine, "loops", built.ref, unique, restart="on-failure")
    healthy = svc(engine, "healthy", built.ref, unique, restart="no",
                  command=("sh", "-c", "while true; do sleep 1; done"),
                  healthcheck=Healthcheck(test=("CMD", "true"), interval_ns=200_000_000,
                                          retries=1))
    ids = {s.service_name: await engine.create_container(s) for s in (quits, loops, healthy)}
    for cid in ids.values():
        await engine.start_container(cid)
    mine: dict[str, ContainerState] = {}
    for _ in range(50):  # bounded: ≤ 10 s
        state = await engine.observe()
        mine = {c.service_name: c for c in state.containers}
        if (mine[quits.service_name].status == "exited"
                and mine[loops.service_name].restart_count > 0
                and mine[healthy.service_name].health == "healthy"):
            break
        await asyncio.sleep(0.2)
    assert mine[quits.service_name].status == "exited"
    assert mine[quits.service_name].exit_code == 3
    assert mine[quits.service_name].finished_at
    assert mine[loops.service_name].restart_count > 0
    assert mine[healthy.service_name].health == "healthy"
    assert mine[healthy.service_name].exit_code is None
    assert mine[healthy.service_name].image == built.ref
    assert mine[healthy.service_name].image_id == built.id
    assert {c.id for c in state.containers} == set(ids.values())
    assert [v.name for v in state.volumes] == [vol.engine_name]
    assert state.image_for(built.ref) is not None
    await engine.remove_container(ids[loops.service_name], force=True)
    with pytest.raises(NotFound, match=ids[loops.service_name][:12]):
        await engine.start_container(ids[loops.service_name])
    images.remove_local(built.ref)
