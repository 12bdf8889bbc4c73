"""Processes bench/tunnel.py starts: the device's tunnel link alone (real device code), the
servers "on the device" (sink, echo, source), and 1,000 idle device tunnels.

Run as `python bench/tunnel_parts.py device|servers|idle ...` (bench/tunnel.py does)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def device(endpoint: str, uuid: str, key: str, data_dir: str) -> None:
    """The device's side: what the supervisor imports for its cloud link, then the tunnel."""
    import edgefleet.device.link  # noqa: F401 - the supervisor has this loaded already
    from edgefleet.device.logs import LogSink
    from edgefleet.device.store import Store

    store = Store(path=Path(data_dir) / "device.sqlite")
    logs = LogSink(store=store, echo=False)
    before = rss_kb()
    from edgefleet.device.tunnel.link import TunnelLink
    from edgefleet.device.tunnel.sessions import SessionContext

    link = TunnelLink(endpoint=endpoint, uuid=uuid, api_key=key,
                      ctx=SessionContext(engine_socket="/nonexistent", scope="bench"),
                      logs=logs, on_poll=lambda _etag: None)
    task = asyncio.create_task(link.run())
    for _ in range(600):  # the link connects (bounded: 30 s)
        if link.mux is not None:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)
    print(json.dumps({"rss_before_kb": before, "rss_connected_kb": rss_kb()}), flush=True)
    await task


async def servers() -> None:
    """sink (reads to EOF, answers b"k"), echo, source (writes N bytes asked for)."""
    async def sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await r.read(1 << 20):
            pass
        w.write(b"k")
        await w.drain()
        w.close()

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()

    async def source(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        n = int((await r.readline()).strip())
        block = b"x" * (1 << 20)
        while n > 0:
            w.write(block[:n])
            n -= min(n, len(block))
            await w.drain()
        w.close()

    ports = {}
    for name, fn in (("sink", sink), ("echo", echo), ("source", source)):
        srv = await asyncio.start_server(fn, "127.0.0.1", 0)
        ports[name] = srv.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


async def idle(endpoint: str, keys_file: str, first: str) -> None:
    """Hold one tunnel per device in `keys_file` ([[uuid, key], ...]), answering pings: the
    first `first` of them, then (after a line on stdin) the rest; a JSON line after each."""
    import websockets

    from edgefleet.tunnel.mux import Mux
    from edgefleet.tunnel.websocket import WebsocketsTransport

    pairs = json.loads(Path(keys_file).read_text())  # noqa: ASYNC240 - once, at start
    base = endpoint.replace("http://", "ws://")
    conns = []

    async def one(uuid: str, key: str) -> None:
        conn = await websockets.connect(f"{base}/device/v3/{uuid}/tunnel",
                                        additional_headers={"Authorization":
                                                            f"Bearer {key}"},
                                        ping_interval=None, compression=None)
        mux = Mux(WebsocketsTransport(conn), initiator=True)
        conns.append(asyncio.create_task(mux.run()))

    for part in (pairs[:int(first)], pairs[int(first):]):
        for i in range(0, len(part), 50):
            await asyncio.gather(*(one(u, k) for u, k in part[i:i + 50]))
        print(json.dumps({"connected": len(conns)}), flush=True)
        if len(conns) < len(pairs):
            await asyncio.to_thread(sys.stdin.readline)
    await asyncio.Event().wait()


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "device":
        asyncio.run(device(*sys.argv[2:6]))
    elif what == "servers":
        asyncio.run(servers())
    elif what == "idle":
        asyncio.run(idle(*sys.argv[2:5]))
