"""The tunnel (issue 14): throughput through it against a direct loopback copy, 1-byte echo
round trips, server memory with a stalled reader and per idle device tunnel (1,000 devices
held by a separate process), and the memory the tunnel adds to a device.

Run: .venv/bin/python bench/tunnel.py [--mb 512] [--devices 1000] [--echo 2000]
Writes the "## tunnel" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx
from tests.support.fleet import free_port

from edgefleet.tunnel.stream import DEFAULT_WINDOW

RESULTS = Path(__file__).parent / "RESULTS.md"
PARTS = str(Path(__file__).parent / "tunnel_parts.py")
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=ENV, **kw)


def json_line(proc: subprocess.Popen[bytes], timeout: float = 120) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if line.strip().startswith("{"):
            return dict(json.loads(line))
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"no JSON line from {proc.args!r}")


def copy(port: int, total: int) -> float:
    """Seconds to push `total` bytes to the sink at `port` and get its receipt."""
    block = os.urandom(1 << 20)
    with socket.create_connection(("127.0.0.1", port)) as s:
        started = time.perf_counter()
        sent = 0
        while sent < total:
            s.sendall(block)
            sent += len(block)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b"k"
        return time.perf_counter() - started


def echo(port: int, n: int) -> list[float]:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            times.append(time.perf_counter() - t0)
        return times


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def stalled(port: int, server_pid: int, total: int, *, stall_s: float) -> dict[str, float]:
    """Read part of a `total`-byte download, stall, then read the rest; server RSS."""
    base = rss_kb(server_pid)
    peak = base
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.sendall(f"{total}\n".encode())
        got = 0
        while got < total // 8:
            got += len(s.recv(1 << 20))
        end = time.monotonic() + stall_s
        while time.monotonic() < end:
            peak = max(peak, rss_kb(server_pid))
            time.sleep(0.1)
        while chunk := s.recv(1 << 20):
            got += len(chunk)
            peak = max(peak, rss_kb(server_pid))
    assert got == total, (got, total)
    return {"base_kb": base, "peak_kb": peak}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=512)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--echo", type=int, default=2000)
    ap.add_argument("--stall-mb", type=int, default=1024)
    a = ap.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="ef-bench-tunnel-"))
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start([PY, "-m", "edgefleet", "server", "run", "--data-dir", str(tmp / "srv"),
                        "--port", str(port), "--no-registry", "--admin-token-file",
                        str(tmp / "token")], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        procs.append(server)
        deadline = time.monotonic() + 60
        while not (tmp / "token").exists() or not _up(url):
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        token = (tmp / "token").read_text().strip()
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                             timeout=60)
        admin.post("/api/v1/fleets", json={"name": "bench", "device_type": "generic-amd64"}
                   ).raise_for_status()
        fleet = admin.get("/api/v1/fleets/bench").json()
        pkey = admin.post("/api/v1/fleets/bench/provisioning-keys", json={}).json()["key"]

        def register(_: int) -> tuple[str, str]:
            u, k = uuidlib.uuid4().hex, uuidlib.uuid4().hex
            httpx.post(f"{url}/device/register", headers={"Authorization": f"Bearer {pkey}"},
                       json={"application": fleet["id"], "device_type": "generic-amd64",
                             "uuid": u, "api_key": k}, timeout=60).raise_for_status()
            return u, k

        with ThreadPoolExecutor(8) as pool:
            pairs = list(pool.map(register, range(a.devices + 1)))
        dev_uuid, dev_key = pairs[0]

        servers = start([PY, PARTS, "servers"], stdout=subprocess.PIPE)
        procs.append(servers)
        ports = json_line(servers)
        device = start([PY, PARTS, "device", url, dev_uuid, dev_key, str(tmp)],
                       stdout=subprocess.PIPE)
        procs.append(device)
        dev_mem = json_line(device)
        env = {**ENV, "EDGEFLEET_SERVER": url, "EDGEFLEET_TOKEN": token,
               "EDGEFLEET_CLIENT_CONFIG": str(tmp / "cli.json")}
        fwd = subprocess.Popen([PY, "-m", "edgefleet", "tunnel", dev_uuid,
                                f"0:{ports['sink']}", f"0:{ports['echo']}",
                                f"0:{ports['source']}"], env=env, stdout=subprocess.PIPE)
        procs.append(fwd)
        assert fwd.stdout is not None
        local = {}
        for name in ("sink", "echo", "source"):
            line = fwd.stdout.readline().decode().split()
            local[name] = int(line[0].rsplit(":", 1)[1])

        total = a.mb << 20
        copy(ports["sink"], 16 << 20), copy(local["sink"], 16 << 20)  # warm up
        direct_s = statistics.median(copy(ports["sink"], total) for _ in range(3))
        relays = {"edgefleet tunnel (CLI)": fwd.pid, "server (relay)": server.pid,
                  "device tunnel link": device.pid, "sink on the device": servers.pid}
        cpu_before = {name: cpu_s(pid) for name, pid in relays.items()}
        tunnel_s = statistics.median(copy(local["sink"], total) for _ in range(3))
        cpu = {name: (cpu_s(pid) - cpu_before[name]) / 3 for name, pid in relays.items()}
        device_peak = rss_kb(device.pid)
        direct_echo = echo(ports["echo"], a.echo)
        tunnel_echo = echo(local["echo"], a.echo)
        stall = stalled(local["source"], server.pid, a.stall_mb << 20, stall_s=5)
        device_peak = max(device_peak, rss_kb(device.pid))
        time.sleep(1)
        device_after = rss_kb(device.pid)

        fwd.terminate()
        time.sleep(1)
        keys_file = tmp / "keys.json"
        keys_file.write_text(json.dumps(pairs[1:]))
        before = rss_kb(server.pid)
        first = max(1, a.devices // 5)
        idle = start([PY, PARTS, "idle", url, str(keys_file), str(first)],
                     stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        procs.append(idle)
        assert idle.stdin is not None
        few = json_line(idle, timeout=300)["connected"]
        time.sleep(3)
        middle = rss_kb(server.pid)
        idle.stdin.write(b"more\n")
        idle.stdin.flush()
        connected = json_line(idle, timeout=300)["connected"]
        time.sleep(3)
        after = rss_kb(server.pid)
        listed = admin.get("/api/v1/devices", params={"fleet": "bench"}).json()
        vpn = sum(1 for d in listed if d["status"] == "VPN Only")
        write(a, direct_s=direct_s, tunnel_s=tunnel_s, total=total,
              direct_echo=direct_echo, tunnel_echo=tunnel_echo, stall=stall,
              idle=(before, middle, after), counts=(few, connected), vpn=vpn,
              dev_mem=dev_mem, device_peak=device_peak, device_after=device_after, cpu=cpu)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ping", timeout=2).text == "OK"
    except httpx.HTTPError:
        return False


def write(a: argparse.Namespace, *, direct_s: float, tunnel_s: float, total: int,
          direct_echo: list[float], tunnel_echo: list[float], stall: dict[str, float],
          idle: tuple[int, int, int], counts: tuple[int, int], vpn: int,
          dev_mem: dict[str, int], device_peak: int, device_after: int,
          cpu: dict[str, float]) -> None:
    def mbps(seconds: float) -> float:
        return total / seconds / 1e6

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    ratio = direct_s / tunnel_s
    p50, p99 = pct(tunnel_echo, 0.5) * 1000, pct(tunnel_echo, 0.99) * 1000
    d50, d99 = pct(direct_echo, 0.5) * 1000, pct(direct_echo, 0.99) * 1000
    idle_before, idle_middle, idle_after = idle
    few, connected = counts
    per_dev = (idle_after - idle_before) / max(1, connected)
    slope = (idle_after - idle_middle) / max(1, connected - few)
    first_per_dev = (idle_middle - idle_before) / max(1, few)
    added = dev_mem["rss_connected_kb"] - dev_mem["rss_before_kb"]
    stall_growth = (stall["peak_kb"] - stall["base_kb"]) / 1024
    load = os.getloadavg()[0]
    cpu_rows = "\n".join(f"- {name}: {seconds:.2f} s" for name, seconds in cpu.items())
    section = f"""## tunnel

Command: `.venv/bin/python bench/tunnel.py --mb {a.mb} --devices {a.devices} --echo {a.echo} --stall-mb {a.stall_mb}`
(this 2-core VM, shared; 1-minute load average at the end: {load:.1f}). Path through the
tunnel: bench client -> `edgefleet tunnel` (process) -> websocket -> fleet server (process,
relay) -> websocket -> device tunnel link (process, the device's own code) -> TCP -> a server
on loopback. The direct figure is the same client to the same server over loopback.

| what | through the tunnel | direct loopback | ratio / verdict |
| --- | --- | --- | --- |
| copy {a.mb} MB (median of 3) | {mbps(tunnel_s):.0f} MB/s | {mbps(direct_s):.0f} MB/s | {ratio:.1%} of loopback (target >= 50%: {verdict(ratio >= 0.5)}) |
| 1-byte echo p50 ({a.echo} round trips) | {p50:.2f} ms | {d50:.3f} ms | |
| 1-byte echo p99 | {p99:.2f} ms | {d99:.3f} ms | target p99 < 10 ms: {verdict(p99 < 10)} |
| server RSS while a reader stalls 5 s in a {a.stall_mb} MB download | {stall['base_kb'] / 1024:.1f} -> peak {stall['peak_kb'] / 1024:.1f} MB | | grew {stall_growth:.1f} MB (bound: the credit window, {DEFAULT_WINDOW >> 10} KiB per stream per hop: the server holds at most two windows of a stream, plus socket buffers) |
| idle device tunnels held ({connected} by one separate process; {vpn} shown VPN Only) | {idle_before / 1024:.1f} -> {idle_middle / 1024:.1f} ({few} devices) -> {idle_after / 1024:.1f} MB server RSS | | {per_dev:.1f} KB per device from none to {connected} (target < 50 KB: {verdict(per_dev < 50)}); {first_per_dev:.1f} KB per device from none to {few}; {slope:.1f} KB per device from {few} to {connected} (the cost of one more device, without the fixed cost of the first ones: {verdict(slope < 50)}) |
| device RSS added by the tunnel (import + connected link) | +{added / 1024:.2f} MB | | target < 5 MB: {verdict(added < 5 * 1024)} |
| device tunnel-link process RSS peak during the copies | {device_peak / 1024:.1f} MB | | |
| device tunnel-link process RSS once the transfers ended | {device_after / 1024:.1f} MB | | {(device_after - dev_mem["rss_connected_kb"]) / 1024:+.1f} MB against the connected, idle link |

CPU seconds (user + system, from /proc) per {a.mb} MB copied through the tunnel, each process
on the path (mean of the 3 copies; a load-independent view of the relays' cost):
{cpu_rows}
"""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    start_at = text.find("## tunnel")
    if start_at >= 0:
        end = text.find("\n## ", start_at + 1)
        text = text[:start_at] + text[end + 1 if end >= 0 else len(text):]
    RESULTS.write_text(text.rstrip() + "\n\n" + section)
    print(section)


if __name__ == "__main__":
    main()
