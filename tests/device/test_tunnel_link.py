"""The device's tunnel link against a real server: it connects with the device key, and after
a server restart every device reconnects, spread out by the jittered backoff."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid as uuidlib
from pathlib import Path

import httpx

from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.device.tunnel.link import TunnelLink, backoff_delay
from edgefleet.device.tunnel.sessions import SessionContext
from tests.support.fleet import LiveServer

DEVICES = 20


def test_backoff_is_jittered_and_capped() -> None:
    delays = [backoff_delay(failures=n) for n in range(1, 12) for _ in range(20)]
    assert max(delays) <= 15.0 and min(delays) >= 0.25
    assert len({round(d, 3) for d in delays[:20]}) > 10, "the same failure count spreads"


def register(server: LiveServer, n: int) -> list[tuple[str, str]]:
    with server.user() as c:
        c.post("/fleets", json={"name": "jitter", "device_type": "generic-amd64"}
               ).raise_for_status()
        fleet_id = c.get("/fleets/jitter").json()["id"]
        pkey = c.post("/fleets/jitter/provisioning-keys", json={}).json()["key"]
    pairs = []
    for _ in range(n):
        u, k = uuidlib.uuid4().hex, uuidlib.uuid4().hex
        httpx.post(f"{server.url}/device/register", headers={"Authorization": f"Bearer {pkey}"},
                   json={"application": fleet_id, "device_type": "generic-amd64", "uuid": u,
                         "api_key": k}, timeout=30).raise_for_status()
        pairs.append((u, k))
    return pairs


async def test_devices_reconnect_spread_out_after_a_server_restart(tmp_path: Path) -> None:
    server = LiveServer(data_dir=tmp_path / "server")
    server.start()
    store = Store(path=tmp_path / "device.sqlite")
    logs = LogSink(store=store, echo=False)
    links = [TunnelLink(endpoint=server.url, uuid=u, api_key=k, logs=logs,
                        ctx=SessionContext(engine_socket="/nonexistent", scope="t"),
                        on_poll=lambda _etag: None)
             for u, k in await asyncio.to_thread(register, server, DEVICES)]
    tasks = [asyncio.create_task(link.run()) for link in links]
    try:
        deadline = time.monotonic() + 30
        while not all(link.connects for link in links):
            assert time.monotonic() < deadline, "not every device connected"
            await asyncio.sleep(0.1)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(2)  # the devices fail to reconnect a few times meanwhile
        restarted = time.monotonic()
        await asyncio.to_thread(server.start)
        deadline = time.monotonic() + 40
        while not all(link.connects == 2 for link in links):
            assert time.monotonic() < deadline, [link.connects for link in links]
            await asyncio.sleep(0.05)
        after = sorted(link.connected_at - restarted for link in links)
        spread = after[-1] - after[0]
        print(f"{DEVICES} devices reconnected {after[0]:.2f}..{after[-1]:.2f}s after the "
              f"restart (spread {spread:.2f}s, median {statistics.median(after):.2f}s)")
        assert spread > 0.5, "reconnects are spread by the jitter"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(server.stop)
        store.close()
