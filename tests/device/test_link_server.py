"""The device side of the link against the real fleet server over real HTTP: registration,
the ETag/304 path, diffed and rate-limited reports, and logs buffered while offline."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from edgefleet.device.cloud import CloudClient, RegistrationRefused
from edgefleet.device.logs import LogSink
from edgefleet.device.logstream import LogStreamer, OfflineBuffer
from edgefleet.device.poll import EXPECT_TRIES, Poller
from edgefleet.device.provision import ensure_registered, pending_identity
from edgefleet.device.report import ReportPolicy
from edgefleet.device.reporter import Reporter
from edgefleet.device.store import Store
from edgefleet.device.supervisor import Supervisor
from edgefleet.engine.docker import DockerEngine
from edgefleet.model.config import load_config
from edgefleet.model.context import DeviceContext
from edgefleet.server import releases
from edgefleet.server import tables as t
from edgefleet.server.db import Database
from tests.support.fleet import LiveServer, free_port

INFO = {"supervisor_version": "0.1.0", "os_version": "test OS", "mac_address": "02:00:00:00:00:01"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(data_dir=tmp_path / "server")
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[CloudClient]:
    c = CloudClient(endpoint=server.url)
    try:
        yield c
    finally:
        await c.close()


def provisioning_config(server: LiveServer, tmp_path: Path, fleet: str) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(server.new_fleet(fleet), indent=2))
    return path


async def registered(server: LiveServer, client: CloudClient, tmp_path: Path, fleet: str
                     ) -> tuple[Path, Store]:
    config = provisioning_config(server, tmp_path, fleet)
    store = Store(path=tmp_path / "dev" / "edgefleet.sqlite")
    await ensure_registered(config_path=config, client=client, store=store, info=INFO)
    return config, store


def device_view(server: LiveServer, uuid: str) -> dict[str, Any]:
    with server.user() as c:
        r = c.get(f"/devices/{uuid}")
        r.raise_for_status()
        return dict(r.json())


# --- registration ----------------------------------------------------------------------------
async def test_registration_stores_uuid_and_key_and_drops_the_provisioning_key(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    config_path = provisioning_config(server, tmp_path, "reg")
    store = Store(path=tmp_path / "dev" / "edgefleet.sqlite")
    cfg = await ensure_registered(config_path=config_path, client=client, store=store,
                                  info=INFO)
    raw = json.loads(config_path.read_text())
    assert "provisioningApiKey" not in raw
    assert raw["uuid"] == cfg.uuid and raw["deviceApiKey"] == cfg.device_api_key
    assert raw["registered_at"] > 0 and raw["deviceId"] > 0
    assert raw["applicationId"] and raw["apiEndpoint"] == server.url, "other fields kept"
    backup = json.loads((tmp_path / "config.json.backup").read_text())
    assert "provisioningApiKey" in backup and "deviceApiKey" not in backup
    fetched = await client.get_target(uuid=str(cfg.uuid), api_key=str(cfg.device_api_key),
                                      etag=None)
    assert fetched.document is not None and str(cfg.uuid) in fetched.document
    view = device_view(server, str(cfg.uuid))
    assert view["fleet"] == "reg" and view["os_version"] == "test OS"
    before = config_path.read_text()
    again = await ensure_registered(config_path=config_path, client=client, store=store,
                                    info=INFO)
    assert again.uuid == cfg.uuid and config_path.read_text() == before, "idempotent"


async def test_crash_after_the_server_registered_is_finished_on_retry(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    config_path = provisioning_config(server, tmp_path, "crash")
    cfg = load_config(path=config_path)
    store = Store(path=tmp_path / "dev" / "edgefleet.sqlite")
    identity = pending_identity(config=cfg, store=store)
    # the first attempt reached the server, then the device died before writing config.json
    await client.register(provisioning_key=str(cfg.provisioning_api_key), body={
        "application": cfg.application_id, "device_type": cfg.device_type,
        "uuid": identity.uuid, "api_key": identity.api_key})
    assert "deviceApiKey" not in json.loads(config_path.read_text())
    done = await ensure_registered(config_path=config_path, client=client, store=store,
                                   info=INFO)  # 409 → our key proves the uuid is ours
    assert done.uuid == identity.uuid and done.device_api_key == identity.api_key
    assert "provisioningApiKey" not in json.loads(config_path.read_text())


async def test_bad_provisioning_key_is_a_clear_error_and_config_json_is_untouched(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    config_path = provisioning_config(server, tmp_path, "badkey")
    raw = json.loads(config_path.read_text())
    raw["provisioningApiKey"] = "not-a-real-key-0123456789"
    config_path.write_text(json.dumps(raw))
    before = config_path.read_bytes()
    store = Store(path=tmp_path / "dev" / "edgefleet.sqlite")
    with pytest.raises(RegistrationRefused) as err:
        await ensure_registered(config_path=config_path, client=client, store=store,
                                info=INFO)
    assert err.value.status == 401
    assert "registering the device: HTTP 401" in str(err.value)
    assert config_path.read_bytes() == before
    assert not (tmp_path / "config.json.backup").exists()
    with server.user() as c:
        assert c.get("/devices").json() == [], "nothing registered"


# --- target polling --------------------------------------------------------------------------
async def test_poll_adopts_a_new_target_then_gets_304_until_it_changes(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    config_path, store = await registered(server, client, tmp_path, "etag")
    cfg = load_config(path=config_path)
    uuid, key = str(cfg.uuid), str(cfg.device_api_key)
    engine = DockerEngine(scope="never-used")
    logs = LogSink(store=store)
    sup = Supervisor(engine=engine, store=store, logs=logs,
                     device=DeviceContext(uuid=uuid, lock_root=str(tmp_path / "locks")))
    poller = Poller(supervisor=sup, client=client, uuid=uuid, api_key=key,
                    default_interval_s=900)
    try:
        assert await poller.poll_once() is True
        assert poller.etag and sup.state.last_fetch_ms is not None
        stored = store.load_target()
        assert stored is not None and stored.source == "cloud"
        first_fetch = sup.state.last_fetch_ms
        await asyncio.sleep(0.01)
        assert await poller.poll_once() is False
        assert poller.not_modified == 1, "unchanged target: 304"
        assert sup.state.last_fetch_ms > first_fetch, "a 304 is a successful fetch too"
        with server.user() as c:
            c.put("/variables", json={"kind": "config", "fleet": "etag",
                                      "name": "SUPERVISOR_POLL_INTERVAL", "value": "20000"}
                  ).raise_for_status()
        old_etag = poller.etag
        assert await poller.poll_once() is True
        assert poller.etag != old_etag and poller.not_modified == 1
        assert poller.interval_s == 20, "the config variable sets the poll interval"
        assert await poller.poll_once() is False and poller.not_modified == 2
    finally:
        await engine.close()


async def test_a_target_the_device_cannot_run_is_rejected_and_the_last_good_one_kept(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    """A server of another version may serve what this device refuses: here the release
    record is edited in the server's database behind its back."""
    config_path, store = await registered(server, client, tmp_path, "badtarget")
    cfg = load_config(path=config_path)
    uuid, key = str(cfg.uuid), str(cfg.device_api_key)
    db = Database(url=f"sqlite:///{server.data_dir / 'server.sqlite'}")
    with db.session() as s:
        fleet = s.execute(sa.select(t.Fleet).where(t.Fleet.name == "badtarget")).scalar_one()
        rel = releases.start_release(s, fleet=fleet, composition={"services": {"web": {}}})
        releases.finish_release(s, release=rel, images=[releases.PushedImage(
            service="web", ref="127.0.0.1:5055/never-pulled:1", digest="")])
        db.bump_generation(s)
        good_commit = rel.commit
    engine = DockerEngine(scope="never-used")
    sup = Supervisor(engine=engine, store=store, logs=LogSink(store=store),
                     device=DeviceContext(uuid=uuid, lock_root=str(tmp_path / "locks")))
    poller = Poller(supervisor=sup, client=client, uuid=uuid, api_key=key,
                    default_interval_s=900)
    try:
        await asyncio.sleep(1.2)  # the server notices the new generation
        assert await poller.poll_once() is True
        with db.session() as s:
            row = s.execute(sa.select(t.Release).where(t.Release.commit == good_commit)
                            ).scalar_one()
            bad = json.loads(row.target)
            bad["services"]["web"]["composition"] = {"ports": ["sometimes"]}
            row.target = json.dumps(bad)
            db.bump_generation(s)
        await asyncio.sleep(1.2)
        assert await poller.poll_once() is False
        assert sup.target is not None
        assert sup.target.device.apps[next(iter(sup.target.device.apps))].release is not None
        stored = store.load_target()
        assert stored is not None
        assert "sometimes" not in json.dumps(stored.document), "the last good target is kept"
        sup.logs.flush()
        rejected = [r.message for r in store.logs() if "Rejected target state" in r.message]
        assert len(rejected) == 1 and "ports" in rejected[0]
        assert await poller.poll_once() is False and poller.not_modified == 1, \
            "the same bad document is not fetched (and rejected) again"
    finally:
        await engine.close()
        db.close()


@asynccontextmanager
async def running_poller(server: LiveServer, client: CloudClient, tmp_path: Path, name: str,
                         **options: Any) -> AsyncIterator[Poller]:
    """A registered device's poller (an hour's interval) running until the block ends, after
    its first poll."""
    config_path, store = await registered(server, client, tmp_path, name)
    cfg = load_config(path=config_path)
    engine = DockerEngine(scope="never-used")
    sup = Supervisor(engine=engine, store=store, logs=LogSink(store=store),
                     device=DeviceContext(uuid=str(cfg.uuid), lock_root=str(tmp_path / "l")))
    poller = Poller(supervisor=sup, client=client, uuid=str(cfg.uuid),
                    api_key=str(cfg.device_api_key), default_interval_s=3600, **options)
    task = asyncio.create_task(poller.run())
    try:
        await polls_reach(poller, 1)
        yield poller
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.close()


async def polls_reach(poller: Poller, count: int, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if poller.polls >= count:
            return
        await asyncio.sleep(0.05)


async def test_poll_now_fetches_at_once_between_long_intervals(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    async with running_poller(server, client, tmp_path, "pollnow") as poller:
        assert poller.polls == 1, "the first poll happens at start"
        await asyncio.sleep(0.3)
        assert poller.polls == 1, "then the next one waits for the interval (an hour)"
        poller.poll_now()  # what POST /v1/update calls
        await polls_reach(poller, 2)
        assert poller.polls == 2 and poller.not_modified == 1


async def test_an_announced_target_not_yet_served_is_polled_for_again(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    """The tunnel's "poll now" names the new target's ETag; a server process that has not yet
    seen the change answers 304 with the old one (several processes behind a proxy), so the
    device polls again shortly — a few times, not forever — instead of waiting out its
    interval (seen to fail before: one poll, then the hour)."""
    async with running_poller(server, client, tmp_path, "expect",
                              expect_retry_s=0.05) as poller:
        poller.poll_now(expect="an ETag this server has not served yet")
        await polls_reach(poller, 4)
        assert poller.polls >= 4, "the device polls again while the announced target is not there"
        await polls_reach(poller, 2 + EXPECT_TRIES)  # 0.05 + 0.1 + 0.2 + 0.4 + 0.8 s
        await asyncio.sleep(1.0)
        assert poller.polls == 2 + EXPECT_TRIES, "and gives up after a few tries"


# --- state reports ---------------------------------------------------------------------------
async def test_reports_send_only_the_diff_at_most_every_10_s(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    config_path, _ = await registered(server, client, tmp_path, "report")
    cfg = load_config(path=config_path)
    uuid, key = str(cfg.uuid), str(cfg.device_api_key)
    now = [1000.0]
    state: dict[str, Any] = {"status": "Idle", "os_version": "test OS 2", "cpu_usage": 3,
                             "memory_usage": 10, "apps": {}}
    reporter = Reporter(client=client, uuid=uuid, api_key=key, current=lambda: dict(state),
                        clock=lambda: now[0])
    assert await reporter.tick() == state, "the first report is whole"
    assert device_view(server, uuid)["os_version"] == "test OS 2"
    state["status"] = "Updating"
    assert await reporter.tick() is None, "within 10 s of the last report"
    now[0] += 10
    assert await reporter.tick() == {"status": "Updating"}, "only what changed"
    assert device_view(server, uuid)["reported_status"] == "Updating"
    now[0] += 10
    state["cpu_usage"] = 50
    assert await reporter.tick() is None, "metrics alone wait 5 minutes"
    now[0] += 290
    assert await reporter.tick() == {"cpu_usage": 50}
    assert device_view(server, uuid)["reported"]["cpu_usage"] == 50
    assert reporter.sent == 3


async def test_rejected_reports_back_off_and_are_resent_whole(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    config_path, _ = await registered(server, client, tmp_path, "backoff")
    cfg = load_config(path=config_path)
    uuid = str(cfg.uuid)
    now = [0.0]
    state = {"status": "Idle", "os_version": "v1"}
    reporter = Reporter(client=client, uuid=uuid, api_key="wrong-key-000000000000",
                        current=lambda: dict(state), clock=lambda: now[0],
                        policy=ReportPolicy(backoff_cap_s=60))
    assert await reporter.tick() is None
    assert reporter.scheduler.failures == 1 and "HTTP 401" in reporter.last_error
    now[0] = 14
    assert await reporter.tick() is None and reporter.scheduler.failures == 1, "15 s backoff"
    now[0] = 15
    assert await reporter.tick() is None and reporter.scheduler.failures == 2
    reporter.api_key = str(cfg.device_api_key)
    now[0] = 15 + 29
    assert await reporter.tick() is None, "30 s backoff after the second failure"
    now[0] = 15 + 30
    assert await reporter.tick() == state
    assert device_view(server, uuid)["os_version"] == "v1"


# --- logs ------------------------------------------------------------------------------------
async def test_logs_buffered_while_offline_arrive_with_the_dropped_count(
        tmp_path: Path) -> None:
    live = LiveServer(data_dir=tmp_path / "server")
    live.start()
    client = CloudClient(endpoint=live.url)
    config_path, store = await registered(live, client, tmp_path, "logs")
    cfg = load_config(path=config_path)
    uuid, key = str(cfg.uuid), str(cfg.device_api_key)
    sink = LogSink(store=store)
    streamer = LogStreamer(logs=sink, client=client, uuid=uuid, api_key=key,
                           service_id=lambda _a, _s: None, buffer=OfflineBuffer(limit=20),
                           max_delay_s=0.5, max_stream_s=0.3, idle_end_s=0.1)
    task = asyncio.create_task(streamer.run())
    try:
        sink.system("online line")
        for _ in range(100):
            if streamer.sent_lines:
                break
            await asyncio.sleep(0.05)
        assert streamer.sent_lines == 1
        live.stop()  # the server goes away
        for n in range(50):
            sink.system(f"offline line {n}")
        for _ in range(100):
            if streamer.failures:
                break
            await asyncio.sleep(0.05)
        assert streamer.failures >= 1 and len(streamer.buffer) == 20
        live.start()  # back, same port and data
        for _ in range(200):
            if not len(streamer.buffer) and not streamer.buffer.dropped:
                break
            await asyncio.sleep(0.05)
        with live.user() as c:
            lines = c.get(f"{live.url}/device/v2/{uuid}/logs", params={"count": 100}).json()
        messages = [line["message"] for line in lines]
        assert messages[0] == "online line"
        assert messages[1] == "30 messages dropped while offline"
        assert messages[2:] == [f"offline line {n}" for n in range(30, 50)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        live.stop()


def test_supervisor_with_a_bad_provisioning_key_says_why_and_keeps_config_json(
        server: LiveServer, tmp_path: Path, unique: str, engine_sock: str) -> None:
    config_path = provisioning_config(server, tmp_path, "badrun")
    raw = json.loads(config_path.read_text())
    raw.update(provisioningApiKey="wrong-provisioning-key-000", listenPort=free_port())
    config_path.write_text(json.dumps(raw))
    before = config_path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "edgefleet", "supervisor", "run", "--config",
                             str(config_path), "--data-dir", str(tmp_path / "data"), "--scope",
                             f"bad{unique}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = b""
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        while b"Registration refused" not in out and time.monotonic() < deadline:
            time.sleep(0.2)
            out += proc.stdout.read() or b""
        text = out.decode(errors="replace")
        assert "Registration refused" in text and "HTTP 401" in text, text[-2000:]
        assert config_path.read_bytes() == before
        with server.user() as c:
            assert c.get("/devices").json() == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_finish_sends_the_last_lines_and_ends_the_upload_cleanly(
        server: LiveServer, client: CloudClient, tmp_path: Path) -> None:
    config_path, store = await registered(server, client, tmp_path, "finish")
    cfg = load_config(path=config_path)
    uuid = str(cfg.uuid)
    sink = LogSink(store=store)
    streamer = LogStreamer(logs=sink, client=client, uuid=uuid, api_key=str(cfg.device_api_key),
                           service_id=lambda _a, _s: None)  # 60 s uploads, 10 s idle

    def messages() -> list[str]:
        with server.user() as c:
            return [line["message"] for line in
                    c.get(f"{server.url}/device/v2/{uuid}/logs").json()]

    task = asyncio.create_task(streamer.run())
    try:
        sink.system("first line")
        for _ in range(100):
            if "first line" in messages():
                break
            await asyncio.sleep(0.05)
        assert messages() == ["first line"], "lines are stored while the upload goes on"
        assert streamer.uploads == 0 and len(streamer.buffer) == 1, "not confirmed yet"
        sink.system("Supervisor stopping")
        streamer.finish()
        await asyncio.wait_for(task, timeout=5)  # returns by itself, not cancelled
        assert messages() == ["first line", "Supervisor stopping"]
        assert streamer.uploads == 1 and len(streamer.buffer) == 0 and streamer.failures == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
