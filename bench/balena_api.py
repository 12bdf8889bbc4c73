"""The balena API's cost: the queries `balena device list` and `balena fleet list` send
(nested `$expand`, computed status), against edgefleet's own user API listing the same
devices, on one server with many devices. Both are measured in the same run, over HTTP on
loopback, and the verdicts come from those numbers.

Writes the "## balena-api" section of bench/RESULTS.md.
Usage: .venv/bin/python bench/balena_api.py [--fleets 20] [--devices 50] [--runs 15]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.fleet_server import run_server  # noqa: E402

from edgefleet.server import org_tables as o  # noqa: E402
from edgefleet.server import tables as t  # noqa: E402

RESULTS = Path(__file__).parent / "RESULTS.md"
DEVICE_LIST = ("$select=id,uuid,device_name,status,is_online,supervisor_version,os_version"
               "&$expand=belongs_to__application($select=app_name,slug),is_of__device_type("
               "$select=slug),is_running__release($select=commit)&$orderby=device_name%20asc")
FLEET_LIST = ("$filter=is_directly_accessible_by__user/any(dau:1%20eq%201)&$orderby=app_name"
              "%20asc&$select=id,app_name,slug&$expand=is_for__device_type($select=slug),"
              "owns__device($select=is_online)")


def seed(db: object, *, user_id: int, fleets: int, devices: int) -> None:
    engine: sa.Engine = db.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        org_id = conn.execute(sa.select(o.Organization.id).where(
            o.Organization.personal_of == user_id)).scalar()
        for f in range(fleets):
            fleet_id = conn.execute(sa.insert(t.Fleet).values(
                uuid=f"{f:032x}", name=f"fleet{f}", owner_id=user_id, organization_id=org_id,
                device_type="generic-amd64", created_ms=1).returning(t.Fleet.id)).scalar_one()
            rel = conn.execute(sa.insert(t.Release).values(
                fleet_id=fleet_id, commit=f"c{f:031x}", status="success", created_ms=1,
            ).returning(t.Release.id)).scalar_one()
            conn.execute(sa.insert(t.Device), [
                {"uuid": f"{f:08x}{d:024x}", "fleet_id": fleet_id, "name": f"d{f}-{d}",
                 "device_type": "generic-amd64", "running_release_id": rel, "created_ms": 1,
                 "last_seen_ms": int(time.time() * 1000)} for d in range(devices)])


def timed(call: Callable[[], int], runs: int) -> list[float]:
    call()  # warm up
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        assert call() == 200
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fleets", type=int, default=20)
    ap.add_argument("--devices", type=int, default=50, help="per fleet")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    total = args.fleets * args.devices
    with tempfile.TemporaryDirectory() as tmp, run_server(data_dir=Path(tmp)) as srv, \
            srv.client(srv.admin_token) as http:
        me = http.get("/actor/v1/whoami").json()
        seed(srv.db, user_id=me["id"], fleets=args.fleets, devices=args.devices)
        assert len(http.get(f"/v7/device?{DEVICE_LIST}").json()["d"]) == total
        assert len(http.get("/api/v1/devices").json()) == total
        rows = {
            "`balena device list` query (`/v7/device`, 3 expands)":
                timed(lambda: http.get(f"/v7/device?{DEVICE_LIST}").status_code, args.runs),
            "`balena fleet list` query (`/v7/application`, lambda + 2 expands)":
                timed(lambda: http.get(f"/v7/application?{FLEET_LIST}").status_code, args.runs),
            "edgefleet's own `GET /api/v1/devices` (peer)":
                timed(lambda: http.get("/api/v1/devices").status_code, args.runs),
            "edgefleet's own `GET /api/v1/devices?limit=50&offset=500` (one page)":
                timed(lambda: http.get("/api/v1/devices?limit=50&offset=500").status_code,
                      args.runs),
        }
    med = {k: statistics.median(v) for k, v in rows.items()}
    peer = med["edgefleet's own `GET /api/v1/devices` (peer)"]
    device_list = med["`balena device list` query (`/v7/device`, 3 expands)"]
    table = "\n".join(f"| {k} | {statistics.median(v):.0f} ms | {max(v):.0f} ms | "
                      f"{statistics.median(v) / peer:.2f}x |" for k, v in rows.items())
    verdict = ("the balena query costs no more than the peer listing the same devices"
               if device_list <= peer else
               f"the balena query costs {device_list / peer:.2f}x the peer")
    verdict += f"; the peer lists {total} devices in {peer:.0f} ms ({peer / total:.2f} ms a device)"
    section = f"""## balena-api

Command: `.venv/bin/python bench/balena_api.py --fleets {args.fleets} --devices {args.devices} \
--runs {args.runs}`

This 2-core VM (shared), SQLite, {total} devices of one user, uvicorn on loopback, {args.runs}
runs after one warm-up.

| request | median | max | vs peer |
| --- | --- | --- | --- |
{table}

Verdict (from this run): {verdict}. Each `$expand` level is one statement over all parents,
so the balena queries take a fixed number of statements whatever the device count. The peer
does too since `views.device_outs` (six statements for any page: devices, fleets, config
variables, releases, device releases; before it, each device took ~6 queries of its own and
this list took 5.1 s). Each listed device still carries its whole `reported` document
(capped at 1 MiB a report), so a fleet with large reports makes a large list: page it with
`limit`/`offset`.
"""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    text = re.sub(r"\n## balena-api\n.*?(?=\n## |\Z)", "", text, flags=re.S).rstrip("\n")
    RESULTS.write_text(text + "\n\n" + section)
    print(section)


if __name__ == "__main__":
    main()
