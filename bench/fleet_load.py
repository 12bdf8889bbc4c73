"""Fleet-server load benchmark (issue 5): N simulated devices speak the device API to a real
`edgefleet server run` process, from this separate load-generator process.

Phases: register N devices; conditional state polls (If-None-Match → 304); state reports
(PATCH diffs); log lines (NDJSON uploads). Reports rate and client-side p50/p99 latency per
phase, for SQLite and PostgreSQL.

Run: .venv/bin/python bench/fleet_load.py [--devices 10000] [--seconds 10] [--concurrency 32]
     [--backends sqlite,postgres]
(PostgreSQL from EDGEFLEET_TEST_PG_URL, a fresh schema per run.) Writes the table and the
verdicts (computed from this run's SQLite numbers) to the "## fleet server load" section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.loadkit import Conn, Phase, measure_floor, run_phase  # noqa: E402
from bench.verdicts import check, checks, write_section  # noqa: E402
from tests.support.fleet_server import pg_schema_url  # noqa: E402

from edgefleet.server.registry import free_port  # noqa: E402

RESULTS = Path(__file__).parent / "RESULTS.md"
PG_URL = os.environ.get("EDGEFLEET_TEST_PG_URL",
                        "postgresql+psycopg://edgefleet:edgefleet@127.0.0.1:5432/edgefleet_test")
COMPOSE = f"""services:
  frontend:
    image: 127.0.0.1:5055/bench/frontend@sha256:{"a" * 64}
    network_mode: host
    volumes: [shared:/data]
  backend:
    image: 127.0.0.1:5055/bench/backend@sha256:{"b" * 64}
    ports: ["1234:80"]
    environment: {{MODE: production}}
volumes:
  shared: {{}}
"""


@dataclass
class Device:
    uuid: str
    key: str
    etag: str = ""


def start_server(data_dir: Path, database_url: str | None) -> tuple[subprocess.Popen[bytes],
                                                                     str, str]:
    port = free_port()
    args = [sys.executable, "-m", "edgefleet", "server", "run", "--data-dir", str(data_dir),
            "--port", str(port), "--no-registry", "--admin-token-file",
            str(data_dir / "admin.token")]
    if database_url:
        args += ["--database-url", database_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(args, stdout=(data_dir / "server.log").open("wb"),
                            stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ping", timeout=1).text == "OK":
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((data_dir / "server.log").read_text())
        time.sleep(0.1)
    return proc, url, (data_dir / "admin.token").read_text().strip()


def setup_fleet(url: str, admin: str) -> tuple[int, str]:
    """A fleet with a release (image-only compose: no build) and a few variables."""
    h = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=60)
    fleet = h.post("/api/v1/fleets", json={"name": "bench", "device_type": "generic-amd64"})
    fleet.raise_for_status()
    key = h.post("/api/v1/fleets/bench/provisioning-keys", json={}).json()["key"]
    for name, value in (("GREETING", "hello"), ("LEVEL", "3")):
        h.put("/api/v1/variables", json={"fleet": "bench", "name": name, "value": value})
    h.put("/api/v1/variables", json={"fleet": "bench", "kind": "config",
                                     "name": "BALENA_SUPERVISOR_POLL_INTERVAL",
                                     "value": "600000"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("docker-compose.yml")
        info.size = len(COMPOSE.encode())
        tar.addfile(info, io.BytesIO(COMPOSE.encode()))
    events = [json.loads(x) for x in h.post("/api/v1/fleets/bench/releases",
                                            content=buf.getvalue()).text.splitlines()]
    assert events[-1]["status"] == "success", events
    return fleet.json()["id"], key


def change_fleet_variable(url: str, admin: str) -> None:
    """A change every device's target sees (so each is rendered again on its next poll)."""
    httpx.put(f"{url}/api/v1/variables", headers={"Authorization": f"Bearer {admin}"},
              json={"fleet": "bench", "name": "GREETING", "value": "changed"}
              ).raise_for_status()


async def load(url: str, admin: str, n: int, seconds: float, concurrency: int) -> list[Phase]:
    fleet_id, prov = setup_fleet(url, admin)
    host, port = url.split("//")[1].split(":")
    conns = [Conn(host, int(port)) for _ in range(concurrency)]
    devices = [Device(uuid.uuid4().hex, uuid.uuid4().hex) for _ in range(n)]
    json_h = {"Content-Type": "application/json"}

    async def register(c: Conn, i: int) -> int:
        d = devices[i]
        body = json.dumps({"application": fleet_id, "device_type": "generic-amd64",
                           "uuid": d.uuid, "api_key": d.key, "supervisor_version": "0.1.0"})
        status, _, _ = await c.request("POST", "/device/register", {
            **json_h, "Authorization": f"Bearer {prov}"}, body.encode())
        return status if status == 201 else 599

    async def first_poll(c: Conn, i: int) -> int:
        d = devices[i]
        status, hdrs, _ = await c.request("GET", f"/device/v3/{d.uuid}/state",
                                          {"Authorization": f"Bearer {d.key}"})
        d.etag = hdrs.get("etag", "")
        return status

    async def poll(c: Conn, i: int) -> int:
        d = devices[random.randrange(n)]
        status, _, _ = await c.request("GET", f"/device/v3/{d.uuid}/state", {
            "Authorization": f"Bearer {d.key}", "If-None-Match": d.etag})
        return 200 if status == 304 else 599

    async def report(c: Conn, i: int) -> int:
        d = devices[random.randrange(n)]
        body = json.dumps({d.uuid: {"cpu_usage": random.randint(0, 100),
                                    "memory_usage": random.randint(100, 900),
                                    "cpu_temp": random.randint(30, 80),
                                    "status": random.choice(["Idle", "Downloading"])}})
        status, _, _ = await c.request("PATCH", "/device/v3/state", {
            **json_h, "Authorization": f"Bearer {d.key}"}, body.encode())
        return status

    async def logs(c: Conn, i: int) -> int:
        d = devices[random.randrange(n)]
        now = int(time.time() * 1000)
        body = b"".join(json.dumps({"message": f"line {i}.{k}", "timestamp": now,
                                    "isSystem": False, "isStdErr": False,
                                    "serviceId": 1}).encode() + b"\n" for k in range(10))
        status, _, _ = await c.request("POST", f"/device/v2/{d.uuid}/log-stream", {
            "Content-Type": "application/x-ndjson", "Authorization": f"Bearer {d.key}"}, body)
        return status

    async def changed_poll(c: Conn, i: int) -> int:
        d = devices[i]
        status, hdrs, _ = await c.request("GET", f"/device/v3/{d.uuid}/state", {
            "Authorization": f"Bearer {d.key}", "If-None-Match": d.etag})
        d.etag = hdrs.get("etag", "")
        return 200 if status == 200 else 599

    phases = [await run_phase("register", 0, conns, register, total=n),
              await run_phase("first poll (200 with body)", 0, conns, first_poll, total=n)]
    await asyncio.to_thread(change_fleet_variable, url, admin)
    phases += [await run_phase("poll after a fleet variable changed (200, re-rendered)", 0,
                               conns, changed_poll, total=n),
              await run_phase("conditional poll (304)", seconds, conns, poll),
              await run_phase("state report (PATCH)", seconds, conns, report),
              await run_phase("log upload (10 lines each)", seconds, conns, logs)]
    for c in conns:
        c.close()
    return phases


def measure(backend: str, n: int, seconds: float, concurrency: int) -> list[Phase]:
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="efload-")))
        url = None
        if backend == "postgres":
            url = stack.enter_context(pg_schema_url(PG_URL))
        proc, base, admin = start_server(data_dir, url)
        try:
            phases = asyncio.run(load(base, admin, n, seconds, concurrency))
            rss = next(line.split()[1] for line in Path(f"/proc/{proc.pid}/status")
                       .read_text().splitlines() if line.startswith("VmRSS"))
            print(f"{backend}: server RSS after the run: {int(rss) // 1024} MB", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        return phases


def table(backend: str, phases: list[Phase]) -> str:
    rows = [f"| {backend} | {p.name} | {p.count} | {p.rate:,.0f}/s | {p.pct(0.5):.1f} ms | "
            f"{p.pct(0.99):.1f} ms | {p.errors} |" for p in phases]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--backends", default="sqlite,postgres")
    a = ap.parse_args()
    load_before = os.getloadavg()[0]
    print(f"load average before: {load_before:.2f}", flush=True)
    out = [table("-", [measure_floor(a.seconds, a.concurrency)])]
    print(out[0], flush=True)
    by_backend: dict[str, list[Phase]] = {}
    for backend in a.backends.split(","):
        by_backend[backend] = measure(backend, a.devices, a.seconds, a.concurrency)
        out.append(table(backend, by_backend[backend]))
        print(out[-1], flush=True)
        print(f"load average now: {os.getloadavg()[0]:.2f}", flush=True)
    write_results(a, out, by_backend.get("sqlite"), load_before, os.getloadavg()[0])


def write_results(a: argparse.Namespace, rows: list[str], sqlite: list[Phase] | None,
                  load_before: float, load_after: float) -> None:
    if sqlite is None:
        verdict = "No SQLite run in this invocation, so no verdicts (the targets are for SQLite)."
    else:
        phase = {p.name.split(" (")[0]: p for p in sqlite}
        poll, rep, reg = phase["conditional poll"], phase["state report"], phase["register"]
        verdict = checks([
            check(">= 2,000 conditional polls/s with p99 < 50 ms",
                  f"{poll.rate:,.0f}/s, p99 {poll.pct(0.99):.1f} ms",
                  poll.rate >= 2000 and poll.pct(0.99) < 50),
            check(f"{a.devices:,} devices registered without errors",
                  f"{reg.count:,} registered, {reg.errors} errors",
                  reg.count >= a.devices and reg.errors == 0),
            check(">= 500 state reports/s", f"{rep.rate:,.0f}/s", rep.rate >= 500)])
    table_rows = "\n".join(rows)
    section = f"""## fleet server load

Command: `.venv/bin/python bench/fleet_load.py --devices {a.devices} --seconds {a.seconds:g}
--concurrency {a.concurrency} --backends {a.backends}` (a real `edgefleet server run` process,
one uvicorn process, `--no-registry`; the load generator is this script in its own process on
the same machine; latency is client-side; 1-minute load average {load_before:.1f} before,
{load_after:.1f} after).

| backend | phase | requests | rate | p50 | p99 | errors |
| --- | --- | --- | --- | --- | --- | --- |
{table_rows}

Targets (SQLite): >= 2,000 conditional polls/s with p99 < 50 ms; {a.devices:,} registered
devices; >= 500 state reports/s.

{verdict}
"""
    write_section("fleet server load", section)


if __name__ == "__main__":
    main()
