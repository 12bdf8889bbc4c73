"""Dashboard: page load times with 10,000 devices, and the server's CPU per open live-log page.

A SQLite server database is filled directly (10,000 devices in one fleet, reports, a release,
variables), the server runs as its own process (`edgefleet server run`), and a signed-in
session loads pages over HTTP. For the live logs, a device sends 20 lines/s while 0 and then N
browsers' worth of SSE streams are open; the server's CPU (utime + stime from /proc) over the
same time gives the cost per open page. Verdicts come from the numbers of this run.

    .venv/bin/python bench/dashboard.py [--devices 10000] [--streams 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]

from fleet_load import start_server  # noqa: E402

from edgefleet.server import keys  # noqa: E402
from edgefleet.server import org_tables as o  # noqa: E402
from edgefleet.server import tables as t  # noqa: E402
from edgefleet.server.admin import ensure_admin  # noqa: E402
from edgefleet.server.db import Database  # noqa: E402
from edgefleet.server.web.device import ACCESS_RECHECK_S  # noqa: E402
from edgefleet.server.web.passwords import hash_password  # noqa: E402

RESULTS = Path(__file__).parent / "RESULTS.md"
PASSWORD = "bench password"
TARGET_MS = 300.0


def fill(data_dir: Path, n: int) -> tuple[str, str, str]:
    """The database with `n` devices; (fleet uuid, a device uuid, that device's key)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(url=f"sqlite:///{data_dir / 'server.sqlite'}")
    (data_dir / "admin.token").write_text(ensure_admin(db) or "")
    now = keys.now_ms()
    with db.session() as s:
        admin = s.query(t.User).one()
        admin.password_hash = hash_password(PASSWORD)
        org = s.execute(sa.select(o.Organization.id).where(
            o.Organization.personal_of == admin.id)).scalar()  # the admin owns it (issue 15)
        fleet = t.Fleet(uuid=uuidlib.uuid4().hex, name="big", owner_id=admin.id,
                        organization_id=org, device_type="generic-amd64", created_ms=now)
        s.add(fleet)
        s.flush()
        rel = t.Release(fleet_id=fleet.id, commit=uuidlib.uuid4().hex, status="success",
                        created_ms=now, finished_ms=now, build_log="built\n")
        s.add(rel)
        for name in ("main", "worker"):
            s.add(t.Service(fleet_id=fleet.id, name=name))
        s.flush()
        rows = [{"uuid": uuidlib.uuid4().hex, "fleet_id": fleet.id, "name": f"dev-{i:05d}",
                 "device_type": "generic-amd64", "running_release_id": rel.id,
                 "status": "Idle", "os_version": "balenaOS 5.3.0",
                 "supervisor_version": "16.4.0", "ip_address": f"10.0.{i // 250}.{i % 250}",
                 "last_seen_ms": now - (i % 3) * 3_600_000, "created_ms": now,
                 "reported": "{}", "os_variant": "prod", "mac_address": "",
                 "vpn_connected": False} for i in range(n)]
        s.execute(t.Device.__table__.insert(), rows)
        ids = [i for (i,) in s.query(t.Device.id).order_by(t.Device.id).all()]
        s.execute(t.DeviceRelease.__table__.insert(), [
            {"device_id": i, "commit": rel.commit, "app_uuid": fleet.uuid,
             "update_status": "done", "updated_ms": now,
             "services": json.dumps({"main": {"status": "Running"},
                                     "worker": {"status": "Running"}})} for i in ids])
        s.add(t.Variable(kind="env", fleet_id=fleet.id, device_id=None, service="",
                         name="GREETING", value="hello"))
        device = s.get(t.Device, ids[n // 2])
        assert device is not None
        key = keys.add_key(s, kind="device", device_id=device.id, fleet_id=fleet.id)
        return fleet.uuid, device.uuid, key


def sign_in(url: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=60)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
    assert token
    r = c.post("/ui/login", data={"username": "admin", "password": PASSWORD,
                                  "csrf": token.group(1)})
    assert r.status_code == 303, r.text
    return c


def timed(c: httpx.Client, path: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = c.get(path)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_logs(url: str, uuid: str, key: str, stop: threading.Event, rate: int) -> None:
    with httpx.Client(base_url=url, timeout=30,
                      headers={"authorization": f"Bearer {key}"}) as c:
        while not stop.is_set():
            body = "".join(json.dumps({"message": f"line {time.time()}", "timestamp":
                                       int(time.time() * 1000), "serviceId": 1}) + "\n"
                           for _ in range(rate // 2))
            c.post(f"/device/v2/{uuid}/log-stream", content=body)
            stop.wait(0.5)


def hold_stream(c: httpx.Client, path: str, stop: threading.Event, got: list[int]) -> None:
    with c.stream("GET", path, timeout=None) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                got.append(1)
            if stop.is_set():
                return


def cpu_with_streams(proc_pid: int, url: str, uuid: str, key: str, streams: int,
                     seconds: float) -> tuple[float, int]:
    stop = threading.Event()
    got: list[int] = []
    sender = threading.Thread(target=send_logs, args=(url, uuid, key, stop, 20))
    clients = [sign_in(url) for _ in range(streams)]
    holders = [threading.Thread(target=hold_stream, args=(
        c, f"/ui/devices/{uuid}/logs/events", stop, got), daemon=True) for c in clients]
    for h in holders:
        h.start()
    sender.start()
    time.sleep(2)
    before, got_before = cpu_s(proc_pid), len(got)
    time.sleep(seconds)
    used = cpu_s(proc_pid) - before
    received = len(got) - got_before
    stop.set()
    sender.join()
    for c in clients:
        c.close()
    return used / seconds, received


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp:
        data = Path(tmp) / "server"
        fleet, device, key = fill(data, a.devices)
        proc, url, _token = start_server(data, None)
        try:
            c = sign_in(url)
            pages = {"fleets overview": "/ui/",
                     "fleet page (devices 1-50)": f"/ui/fleets/{fleet}",
                     "fleet page, last page by last seen": f"/ui/fleets/{fleet}?sort=last_seen"
                                                            f"&desc=1&page={a.devices // 50}",
                     "devices table, search + status filter": f"/ui/fleets/{fleet}/devices"
                                                               "?q=dev-09&status=Online",
                     "device page": f"/ui/devices/{device}"}
            for path in pages.values():
                timed(c, path, 2)  # warm up
            rows = []
            for name, path in pages.items():
                ms = timed(c, path, a.runs)
                p50 = statistics.median(ms)
                p95 = sorted(ms)[int(len(ms) * 0.95) - 1]
                rows.append((name, p50, p95, "PASS" if p95 < TARGET_MS else "FAIL"))
                print(f"{name}: p50 {p50:.0f} ms, p95 {p95:.0f} ms", flush=True)
            idle, _ = cpu_with_streams(proc.pid, url, device, key, 0, a.seconds)
            busy, got = cpu_with_streams(proc.pid, url, device, key, a.streams, a.seconds)
            per = (busy - idle) / a.streams
            print(f"server CPU: {idle * 100:.1f}% with 0 streams, {busy * 100:.1f}% with "
                  f"{a.streams} ({got} lines delivered); {per * 100:.2f}% per page", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    load = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    cmd = (f".venv/bin/python bench/dashboard.py --devices {a.devices} --streams {a.streams} "
           f"--seconds {a.seconds:g} --runs {a.runs}")
    table = "\n".join(f"| {n} | {p50:.0f} ms | {p95:.0f} ms | {v} |" for n, p50, p95, v in rows)
    section = f"""## dashboard

Command: `{cmd}`
(this 2-core VM, SQLite, the server in its own process, a signed-in session
over loopback HTTP; {a.runs} loads per page after 2 warm-ups). 1-minute load average:
{load} (above 2, other work shared the 2 cores: the numbers are then noisy).

| page ({a.devices:,} devices in one fleet) | p50 | p95 | target p95 < {TARGET_MS:.0f} ms |
| --- | --- | --- | --- |
{table}

Live logs: a device sends 20 lines/s; the server's CPU over {a.seconds:g} s is
{idle * 100:.1f}% of one core with no live-log page open and {busy * 100:.1f}% with
{a.streams} open ({got} lines delivered to them): **{per * 100:.2f}% of one core per open
live-log page** (each page re-reads new lines from the store when they arrive, and
re-checks the user's access every {ACCESS_RECHECK_S:g} s).
"""
    text = RESULTS.read_text()
    text = re.sub(r"## dashboard\n.*?(?=\n## |\Z)", "", text, flags=re.S).rstrip() + "\n"
    RESULTS.write_text(text + "\n" + section)


if __name__ == "__main__":
    main()
