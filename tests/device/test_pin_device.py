"""pinDevice end to end against the real fleet server over real HTTP: a device preloaded with
apps.json (`pinDevice: true`) joins its fleet, pins itself to the preloaded release before its
first poll, stays there when the fleet moves on, and follows the fleet once a user unpins it;
an unknown commit and an unreachable server are handled as docs/device-link.md says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from edgefleet.cli import app
from edgefleet.device.cloud import CloudClient, CloudError, PinRefused
from edgefleet.device.link import CloudLink
from edgefleet.device.logs import LogSink
from edgefleet.device.pin import PIN_KEY, PIN_RELEASE_KEY, pending_pin
from edgefleet.device.provision import ensure_registered
from edgefleet.device.runtime import device_uuid, load_apps_json
from edgefleet.device.store import Store
from edgefleet.device.supervisor import Supervisor
from edgefleet.engine.docker import DockerEngine
from edgefleet.model.config import load_config
from edgefleet.model.context import DeviceContext
from edgefleet.server import releases
from edgefleet.server import tables as t
from edgefleet.server.db import Database
from tests.support.fleet import LiveServer

INFO = {"supervisor_version": "0.1.0", "os_version": "test OS"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(data_dir=tmp_path / "server", settings_overrides={"cache_refresh_s": 0.2})
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def db(server: LiveServer) -> Iterator[Database]:
    """The server's own database (releases are recorded here without a build)."""
    database = Database(url=f"sqlite:///{server.data_dir / 'server.sqlite'}")
    try:
        yield database
    finally:
        database.close()


def add_release(db: Database, fleet: str) -> str:
    with db.session() as s:
        row = s.execute(sa.select(t.Fleet).where(t.Fleet.name == fleet)).scalar_one()
        rel = releases.start_release(s, fleet=row, composition={"services": {"web": {}}})
        releases.finish_release(s, release=rel, images=[releases.PushedImage(
            service="web", ref=f"127.0.0.1:5055/pin-never-pulled:{rel.commit[:8]}", digest="")])
        db.bump_generation(s)
        return rel.commit


def preload_apps_json(db: Database, fleet: str, commit: str, path: Path) -> None:
    """The apps.json `edgefleet preload release <fleet> --pin` writes for `commit` (a commit
    the server does not know gets release 1's services under that name)."""
    with db.session() as s:
        row = s.execute(sa.select(t.Fleet).where(t.Fleet.name == fleet)).scalar_one()
        rel = s.execute(sa.select(t.Release).where(t.Release.commit == commit)).scalar()
        if rel is None:
            rel = s.execute(sa.select(t.Release).where(t.Release.fleet_id == row.id)
                            .order_by(t.Release.id)).scalars().first()
        assert rel is not None
        doc = {"config": {}, "pinDevice": True, "apps": {row.uuid: {
            "id": row.id, "name": row.name, "class": "fleet",
            "releases": {commit: json.loads(rel.target)}}}}
    path.write_text(json.dumps(doc))


@dataclass
class Device:
    """A preloaded device: store, supervisor (its reconcile loop never runs) and config."""

    config_path: Path
    data_dir: Path
    store: Store
    supervisor: Supervisor
    engine: DockerEngine

    def link(self) -> CloudLink:
        return CloudLink(supervisor=self.supervisor, config=load_config(path=self.config_path),
                         config_path=self.config_path, data_dir=self.data_dir)

    def commit(self) -> str | None:
        target = self.supervisor.target
        assert target is not None
        found = next(iter(target.device.apps.values())).release
        return found[0] if found else None

    def messages(self) -> list[str]:
        self.supervisor.logs.flush()
        return [r.message for r in self.store.logs()]


@pytest.fixture
async def make_device(server: LiveServer, tmp_path: Path
                      ) -> AsyncIterator[Callable[[str, Path], Awaitable[Device]]]:
    made: list[Device] = []

    async def make(fleet: str, apps_json: Path) -> Device:
        """A device with the provisioning config.json `<tmp>/<fleet>.json`, after its first
        boot loaded `apps_json`."""
        root = tmp_path / f"dev{len(made)}"
        root.mkdir()
        config_path = root / "config.json"
        config_path.write_text((tmp_path / f"{fleet}.json").read_text())
        store = Store(path=root / "edgefleet.sqlite")
        uuid = device_uuid(config=load_config(path=config_path), store=store)
        engine = DockerEngine(scope="never-used")
        sup = Supervisor(engine=engine, store=store, logs=LogSink(store=store),
                         device=DeviceContext(uuid=uuid, lock_root=str(root / "locks")))
        message = load_apps_json(path=apps_json, supervisor=sup, store=store)
        assert "pinDevice: will pin to release" in message, message
        device = Device(config_path=config_path, data_dir=root, store=store, supervisor=sup,
                        engine=engine)
        made.append(device)
        return device

    yield make
    for device in made:
        await device.engine.close()
        device.store.close()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def view(server: LiveServer, uuid: str) -> dict[str, Any]:
    with server.user() as c:
        r = c.get(f"/devices/{uuid}")
        r.raise_for_status()
        return dict(r.json())


async def poll_again(link: CloudLink) -> None:
    """Let the server see the latest generation, then make the device poll at once."""
    assert link.poller is not None
    await asyncio.sleep(0.5)
    before = link.poller.polls
    link.poll_now()
    await until(lambda: link.poller is not None and link.poller.polls > before, "a poll")


async def test_a_preloaded_device_pins_itself_stays_and_follows_once_unpinned(
        server: LiveServer, db: Database, make_device: Any, tmp_path: Path) -> None:
    (tmp_path / "kiosks.json").write_text(json.dumps(server.new_fleet("kiosks")))
    r1 = add_release(db, "kiosks")
    r2 = add_release(db, "kiosks")  # the fleet is already past the preloaded release
    preload_apps_json(db, "kiosks", r1, tmp_path / "apps.json")
    dev = await make_device("kiosks", tmp_path / "apps.json")
    assert dev.store.get_config(key=PIN_KEY) == "true"
    with db.session() as s:
        fleet_uuid = s.execute(sa.select(t.Fleet.uuid).where(t.Fleet.name == "kiosks")
                               ).scalar_one()
    assert json.loads(dev.store.get_config(key=PIN_RELEASE_KEY) or "") == {
        "app": fleet_uuid, "commit": r1}
    link = dev.link()
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.poller is not None and link.poller.polls >= 1, "first poll")
        uuid = dev.supervisor.device.uuid
        shown = view(server, uuid)
        assert shown["pinned_release"] == r1 and shown["target_release"] == r1
        assert dev.commit() == r1, "the first poll did not move it to the fleet's r2"
        assert dev.store.get_config(key=PIN_KEY) == "", "cleared once the server accepted"
        assert pending_pin(store=dev.store) is None
        assert any(m.startswith(f"Pinned to the preloaded release {r1}")
                   for m in dev.messages())
        r3 = add_release(db, "kiosks")
        await poll_again(link)
        assert dev.commit() == r1, "the fleet's next release does not move it"
        assert view(server, uuid)["target_release"] == r1
        result = CliRunner().invoke(app, ["device", "pin", uuid[:8], "--unpin", "--json"], env={
            "EDGEFLEET_CLIENT_CONFIG": str(tmp_path / "none.json"),
            "EDGEFLEET_SERVER": server.url, "EDGEFLEET_TOKEN": server.token})
        assert result.exit_code == 0, result.output
        await poll_again(link)
        assert dev.commit() == r3, "unpinned: it follows the fleet"
        stored = dev.store.load_target()
        assert stored is not None and stored.source == "cloud"
        assert r2 != r3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # the next start does not pin again (the flag is gone)
    link = dev.link()
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.poller is not None and link.poller.polls >= 1, "first poll")
        assert view(server, dev.supervisor.device.uuid)["pinned_release"] is None
        assert dev.commit() == r3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_unknown_commit_drops_the_flag_with_a_reason_and_follows_the_fleet(
        server: LiveServer, db: Database, make_device: Any, tmp_path: Path) -> None:
    (tmp_path / "local.json").write_text(json.dumps(server.new_fleet("local")))
    latest = add_release(db, "local")
    unknown = "0123456789abcdef" * 2  # built on a laptop, never pushed to this fleet
    preload_apps_json(db, "local", unknown, tmp_path / "apps.json")
    dev = await make_device("local", tmp_path / "apps.json")
    link = dev.link()
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.poller is not None and link.poller.polls >= 1, "first poll")
        uuid = dev.supervisor.device.uuid
        assert view(server, uuid)["pinned_release"] is None
        assert dev.store.get_config(key=PIN_KEY) == "", "dropped, not retried forever"
        dropped = [m for m in dev.messages() if m.startswith("pinDevice dropped")]
        assert len(dropped) == 1
        assert unknown in dropped[0] and "HTTP 404" in dropped[0]
        assert "has no release" in dropped[0] and "follows its fleet" in dropped[0]
        assert dev.commit() == latest
        with server.user() as c:  # the reason reached the server's log of the device too
            await until(lambda: any(line["message"].startswith("pinDevice dropped") for line in
                                    c.get(f"{server.url}/device/v2/{uuid}/logs").json()),
                        "the log line on the server")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_pin_not_accepted_keeps_the_flag_and_the_next_start_pins(
        server: LiveServer, db: Database, make_device: Any, tmp_path: Path) -> None:
    (tmp_path / "flaky.json").write_text(json.dumps(server.new_fleet("flaky")))
    r1 = add_release(db, "flaky")
    add_release(db, "flaky")
    preload_apps_json(db, "flaky", r1, tmp_path / "apps.json")
    dev = await make_device("flaky", tmp_path / "apps.json")
    client = CloudClient(endpoint=server.url)
    cfg = await ensure_registered(config_path=dev.config_path, client=client, store=dev.store,
                                  info=INFO)
    await client.close()
    uuid, key = str(cfg.uuid), str(cfg.device_api_key)
    server.stop()  # the server goes away right after registration
    link = dev.link()
    attempt = asyncio.create_task(link.pin_preloaded(uuid=uuid, api_key=key))
    try:
        await until(lambda: any(m.startswith("Cannot pin to the preloaded release yet")
                                for m in dev.messages()), "a failed attempt")
        assert not attempt.done(), "retried with backoff, not given up"
    finally:
        attempt.cancel()  # the supervisor stops (or crashes) before the server came back
        await asyncio.gather(attempt, return_exceptions=True)
        await link.client.close()
    assert dev.store.get_config(key=PIN_KEY) == "true", "kept: not accepted yet"
    assert pending_pin(store=dev.store) is not None
    assert dev.commit() == r1
    server.start()
    link = dev.link()  # the next start
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.poller is not None and link.poller.polls >= 1, "first poll")
        assert view(server, uuid)["pinned_release"] == r1
        assert dev.commit() == r1 and dev.store.get_config(key=PIN_KEY) == ""
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_another_devices_key_cannot_pin_this_device(
        server: LiveServer, db: Database, tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(server.new_fleet("shared")))
    r1 = add_release(db, "shared")
    add_release(db, "shared")
    (tmp_path / "b.json").write_text((tmp_path / "a.json").read_text())
    client = CloudClient(endpoint=server.url)
    stores = [Store(path=tmp_path / "a.sqlite"), Store(path=tmp_path / "b.sqlite")]
    try:
        a = await ensure_registered(config_path=tmp_path / "a.json", client=client,
                                    store=stores[0], info=INFO)
        b = await ensure_registered(config_path=tmp_path / "b.json", client=client,
                                    store=stores[1], info=INFO)
        with pytest.raises(CloudError) as err:
            await client.pin_release(uuid=str(a.uuid), api_key=str(b.device_api_key),
                                     commit=r1)
        assert "HTTP 403" in str(err.value) and "only its own device" in str(err.value)
        assert not isinstance(err.value, PinRefused), "not a verdict on the release"
        assert view(server, str(a.uuid))["pinned_release"] is None
        await client.pin_release(uuid=str(a.uuid), api_key=str(a.device_api_key), commit=r1)
        assert view(server, str(a.uuid))["pinned_release"] == r1
        assert view(server, str(b.uuid))["pinned_release"] is None
    finally:
        await client.close()
        for store in stores:
            store.close()


def test_a_flag_without_a_recorded_release_uses_the_preloaded_target_only(
        tmp_path: Path) -> None:
    """A store written before `pinDeviceRelease` existed holds the flag alone: the commit comes
    from the stored target while it is still the one apps.json set, never from a cloud one."""
    store = Store(path=tmp_path / "s.sqlite")
    try:
        doc = {"dev": {"name": "", "config": {}, "apps": {"app1": {
            "id": 1, "name": "a", "releases": {"c0ffee": {"id": 1, "services": {}}}}}}}
        store.set_config(key=PIN_KEY, value="true")
        assert pending_pin(store=store) is None, "no target at all"
        store.save_target(source="apps.json", document=doc)
        pin = pending_pin(store=store)
        assert pin is not None and (pin.app, pin.commit) == ("app1", "c0ffee")
        store.save_target(source="cloud", document=doc)
        assert pending_pin(store=store) is None, "a cloud target is not what was preloaded"
        store.set_config(key=PIN_RELEASE_KEY, value=json.dumps({"app": "x", "commit": "abc"}))
        pin = pending_pin(store=store)
        assert pin is not None and pin.commit == "abc", "the recorded release wins"
        store.set_config(key=PIN_KEY, value="")
        assert pending_pin(store=store) is None, "cleared"
    finally:
        store.close()
