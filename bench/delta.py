"""Delta-update benchmark (issue 19): bytes and time of two updates, through a delta and
through a registry pull, on a device engine (a private dockerd) on loopback, plus the server's
CPU time to make each delta.

- update 1: one source file changed inside a 50 MB application layer;
- update 2: a 16 MB dependency layer rebuilt with identical contents and new timestamps.

A real `edgefleet server run` process (the local registry 127.0.0.1:5055) builds the three
releases; a device registered with the fleet's provisioning key applies each delta with the
supervisor's own code (`device/delta.py` + `device/delta_apply.py`: rebuild the source layers
from the data root, decode while streaming into `POST /images/load`, every layer's diffId
checked before the archive is completed). Delta bytes are counted by the server as it sends them;
pull bytes are the registry's sizes of the compressed blobs the engine lacks (what it
downloads). Times: the delta path is timed once the server has made the delta (generation is
once per fleet and measured separately as server CPU and wall time); each run removes the
new image first, then times the delta and the pull alternately.

Run: .venv/bin/python bench/delta.py [--runs 5]   (needs scripts/setup: dockerd + registry)
Writes the "## delta" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
from bench.verdicts import check, checks, write_section  # noqa: E402
from tests.e2e.test_delta import write_project  # noqa: E402
from tests.support import images  # noqa: E402
from tests.support.dockerd import new_dockerd  # noqa: E402
from tests.support.fleet import free_port  # noqa: E402

from edgefleet.device.delta import TRANSPORTS, DeltaEngine, DeltaSettings  # noqa: E402
from edgefleet.device.logs import LogSink  # noqa: E402
from edgefleet.device.store import Store  # noqa: E402
from edgefleet.engine.docker import DockerEngine  # noqa: E402

CLI = [sys.executable, "-m", "edgefleet"]
MB = 1 << 20
WAYS = ("delta", "other", "pull", "load")
"""Timed in turn in each run: the supervisor's delta path (its default transport), the same
delta through the other transport, a registry pull, `docker load` of the new layers alone."""


def cli(url: str, token: str, work: Path, *args: str) -> str:
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env={
        **os.environ, "EDGEFLEET_SERVER": url, "EDGEFLEET_TOKEN": token,
        "EDGEFLEET_CLIENT_CONFIG": str(work / "cli.json")})
    if out.returncode:
        raise SystemExit(f"edgefleet {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def push(url: str, token: str, work: Path, project: Path) -> str:
    events = [json.loads(x) for x in cli(url, token, work, "push", "bench", str(project),
                                          "--json").splitlines() if x.startswith("{")]
    done = [e for e in events if e.get("type") == "done"]
    if not done or done[-1]["status"] != "success":
        raise SystemExit(f"push failed: {events[-5:]}")
    return str(done[-1]["commit"])


async def new_layers_archive(engine: DockerEngine, image_id: str) -> bytes:
    """`docker save` of the image, cut down to what a delta's archive holds: the config, the
    layers no other image on the engine has, manifest.json (untagged)."""
    have: set[str] = set()
    for other in (await engine.http.get("/images/json", params={"all": "1"})).json():
        if other["Id"] != image_id:
            have.update((await engine.image_inspect(other["Id"]))["RootFS"]["Layers"])
    r = await engine.http.get(f"/images/{image_id}/get", timeout=None)
    r.raise_for_status()
    saved = tarfile.open(fileobj=io.BytesIO(r.content))  # noqa: SIM115
    manifest = json.load(saved.extractfile("manifest.json"))  # type: ignore[arg-type]
    config_name = manifest[0]["Config"]
    config = saved.extractfile(config_name).read()  # type: ignore[union-attr]
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    keep = {config_name} | {name for name, d in zip(manifest[0]["Layers"], diff_ids, strict=True)
                            if d not in have}
    manifest[0]["RepoTags"] = None
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as arc:
        for member in saved.getmembers():
            if member.name in keep:
                arc.addfile(member, saved.extractfile(member))
        raw = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(raw)
        arc.addfile(info, io.BytesIO(raw))
    return out.getvalue()


async def load(engine: DockerEngine, archive: bytes, image_id: str) -> str:
    """`POST /images/load` of an archive already in memory: what the engine alone takes."""
    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(archive), MB):
            yield archive[i:i + MB]

    r = await engine.http.post("/images/load", params={"quiet": "1"}, content=body(),
                               headers={"Content-Type": "application/x-tar"}, timeout=None)
    if r.status_code != 200 or '"error' in r.text:
        raise SystemExit(f"docker load failed: {r.text[-300:]}")
    return str((await engine.image_inspect(image_id))["Id"])


async def run(url: str, token: str, key: str, refs: list[str], sock: str, work: Path,
              runs: int) -> list[dict[str, Any]]:
    store = Store(path=work / "device.sqlite")
    log = LogSink(store=store, echo=False)
    # the supervisor's engine as it is made (its default transports), and one held to the
    # other transport, timed beside it
    engine = DeltaEngine(socket=sock, scope="benchdelta", data_dir=work / "device", log=log)
    other = DeltaEngine(socket=sock, scope="benchdelta", data_dir=work / "device2", log=log)
    other.transports = tuple(t for t in TRANSPORTS if t != engine.transports[0])[:1]
    (work / "device").mkdir(exist_ok=True)
    (work / "device2").mkdir(exist_ok=True)
    plain = DockerEngine(socket=sock, scope="benchdelta")
    engine.settings = other.settings = lambda: DeltaSettings(endpoint=url, api_key=key)
    admin = {"Authorization": f"Bearer {token}"}
    out: list[dict[str, Any]] = []
    http = httpx.AsyncClient(base_url=url, timeout=60)
    try:
        await plain.pull(refs[0])
        for src, dest in itertools.pairwise(refs):
            # let the server make the delta first (its cost is measured on its side)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                r = await http.get("/api/v3/delta", params={"src": src, "dest": dest},
                                   headers={"Authorization": f"Bearer {key}"})
                if r.status_code == 200:
                    break
                if r.status_code != 202:
                    raise SystemExit(f"delta {src} -> {dest}: HTTP {r.status_code} {r.text}")
                await asyncio.sleep(0.5)
            job = r.json()
            times: dict[str, list[float]] = {h: [] for h in WAYS}
            phases: dict[str, list[dict[str, float]]] = {"delta": [], "other": []}
            sent: list[int] = []
            floor = b""
            for _ in range(runs):
                for how in WAYS:
                    with contextlib.suppress(Exception):  # absent before the first run
                        await plain.remove_image(job["image_id"])
                    os.sync()
                    served0 = (await http.get("/api/v3/delta-stats", headers=admin)).json()
                    t0 = time.perf_counter()
                    if how == "load":
                        got = await load(plain, floor, job["image_id"])
                    elif how == "pull":
                        got = await plain.pull(dest)
                    else:
                        got = await (engine if how == "delta" else other).pull(dest)
                    wall = time.perf_counter() - t0
                    if got != job["image_id"]:
                        raise SystemExit(f"{how} gave {got}, expected {job['image_id']}")
                    times[how].append(wall)
                    if how == "delta":
                        after = (await http.get("/api/v3/delta-stats", headers=admin)).json()
                        sent.append(after["served_bytes"] - served0["served_bytes"])
                    if how in phases:
                        which = engine if how == "delta" else other
                        phases[how].append(dict(which.stats["last_phases_s"]))
                    if how == "pull" and not floor:
                        floor = await new_layers_archive(plain, job["image_id"])
                    print(f"{dest[-12:]} {how}: {wall:.2f} s"
                          + (f" {phases[how][-1]}" if how in phases else ""), flush=True)
            for which in (engine, other):
                if which.stats["fallbacks"] or which.stats["transport_fallbacks"] \
                        or which.stats["via"].get(which.transports[0]) != runs * len(out) + runs:
                    raise SystemExit(f"a delta did not go the way timed: {which.stats}")
            out.append({"job": job, "times": times, "sent": sent, "phases": phases,
                        "floor_bytes": len(floor), "transport": engine.transports[0],
                        "other": other.transports[0]})
    finally:
        await http.aclose()
        await engine.close()
        await other.close()
        await plain.close()
        store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT / "src")
    work = Path(tempfile.mkdtemp(prefix="deltabench", dir="/var/tmp"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*CLI, "server", "run", "--data-dir", str(work / "server"),
                               "--port", str(port), "--registry", images.REGISTRY,
                               "--admin-token-file", str(work / "admin.token")],
                              stdout=open(work / "server.log", "wb"),  # noqa: SIM115
                              stderr=subprocess.STDOUT)
    engine = new_dockerd(base=str(work))
    load0 = os.getloadavg()[0]
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/ping", timeout=2).text == "OK":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        token = (work / "admin.token").read_text().strip()
        cli(url, token, work, "fleet", "create", "bench", "--type", "generic-amd64")
        project = work / "project"
        commits = [push(url, token, work, write_project(project, version="1", deps_build=1)),
                   push(url, token, work, write_project(project, version="2", deps_build=1)),
                   push(url, token, work, write_project(project, version="2", deps_build=3,
                                                        touch_deps=True))]
        headers = {"Authorization": f"Bearer {token}"}
        refs = [httpx.get(f"{url}/api/v1/releases/{c}", headers=headers).json()["images"][0]
                ["ref"] for c in commits]
        cli(url, token, work, "device", "config", "bench", "-o", str(work / "prov.json"))
        prov = json.loads((work / "prov.json").read_text())
        key = uuid.uuid4().hex + uuid.uuid4().hex
        r = httpx.post(f"{url}/device/register", json={
            "application": prov["applicationId"], "device_type": "generic-amd64",
            "uuid": uuid.uuid4().hex, "api_key": key},
            headers={"Authorization": f"Bearer {prov['provisioningApiKey']}"})
        r.raise_for_status()
        engine.start()
        results = asyncio.run(run(url, token, key, refs, engine.sock, work, args.runs))
        load1 = os.getloadavg()[0]
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    write(results, args.runs, (load0, load1))


PHASES = {
    "registry": ("download", "reference", "pull", "register"),
    "load": ("download", "reference", "decode", "send", "engine"),
}
WHAT = {
    "registry": "the engine pulls the new layers from a loopback registry the supervisor runs "
                "for this one apply (uncompressed, decoded as the engine fetches them, large "
                "old files sent from the data root by sendfile), then "
                "the image is registered by its config (`device/delta_registry.py`)",
    "load": "an image archive streamed into `POST /images/load` while the layers are decoded "
            "(`device/delta_apply.py`)",
}


def write(results: list[dict[str, Any]], runs: int, load: tuple[float, float]) -> None:
    names = ["one source file changed in a 50 MB application layer",
             "16 MB dependency layer rebuilt, identical contents, new timestamps"]
    targets = [10, 50]
    med = statistics.median
    rows, lines, where, every = [], [], [], []
    mine, other = results[0]["transport"], results[0]["other"]
    for name, target, r in zip(names, targets, results, strict=True):
        job, t = r["job"], r["times"]
        sent = med(r["sent"])
        ratio = job["pull_bytes"] / sent if sent else float("inf")
        rows.append(f"| {name} | {sent / 1024:,.0f} KiB | {job['pull_bytes'] / MB:.1f} MB | "
                    f"{ratio:,.0f}× | {med(t['delta']):.2f} s | {med(t['other']):.2f} s | "
                    f"{med(t['pull']):.2f} s | {med(t['load']):.2f} s | "
                    f"{job['cpu_s']:.2f} s / {job['wall_s']:.2f} s | "
                    f"{job['new_bytes'] / MB:.1f} MB |")
        for how, transport in (("delta", mine), ("other", other)):
            where.append(f"- {name}, through {transport}: " + ", ".join(
                f"{k} {med(p.get(k, 0.0) for p in r['phases'][how]):.3f} s"
                for k in PHASES[transport]))
        every.append(f"- {name}: delta through {mine} " + ", ".join(
            f"{x:.2f}" for x in t["delta"]) + f"; through {other} " + ", ".join(
            f"{x:.2f}" for x in t["other"]) + "; pull " + ", ".join(
            f"{x:.2f}" for x in t["pull"]) + "; docker load alone " + ", ".join(
            f"{x:.2f}" for x in t["load"]))
        lines.append(check(f"{name}: at least {target}× fewer bytes than the pull",
                           f"{ratio:,.0f}×", ratio >= target))
        lines.append(check(f"{name}: time to update (the supervisor's path, through {mine}) "
                           "no worse than the pull (median)",
                           f"{med(t['delta']):.2f} s vs {med(t['pull']):.2f} s",
                           med(t["delta"]) <= med(t["pull"])))
        faster = med(t["delta"]) <= med(t["other"])
        lines.append(check(f"{name}: the supervisor's default transport ({mine}) is the faster "
                           "of the two (median)",
                           f"{med(t['delta']):.2f} s vs {med(t['other']):.2f} s through "
                           f"{other}", faster))
    table = "\n".join(rows)
    section = f"""## delta

Command: `.venv/bin/python bench/delta.py --runs {runs}` (2-core VM shared with other work:
1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end; dockerd 20.10;
server, registry and device engine on loopback). A real `edgefleet server run` builds three
releases of one service FROM scratch (busybox, a 16 MB dependency layer, a 50 MB application
layer of random data in 5 MB files); the device engine is a private dockerd holding the
previous release, and applies each delta with `edgefleet.device.delta`: the delta downloaded,
its manifest checked against the release's digest, then the new layers handed to the engine,
each decoded as it streams and its diffId checked before its last byte goes. Here the server
makes "tar" plans (engine/delta_tar.py: literal tar headers and changed files, the unchanged
files copied by the device from its data root), so no zstd reference is rebuilt; a layer of
another shape gets a zstd frame against the old layer, whose rebuilding is the "reference"
phase below. Two transports do that last step: {mine} (the
supervisor's default: {WHAT[mine]}) and {other} ({WHAT[other]}); both are timed.
Delta bytes: what the server sent (its own count); pull bytes: the registry's sizes of the
compressed blobs the engine lacks. Times: medians of {runs} runs per path, the four paths
alternating in each run, the new image removed before each, from the supervisor's `pull` call
until the engine lists the image. The delta path is timed with the delta already made: the
server makes each delta once per fleet, off the request path (here the bench's first ask
starts it and the bench waits until it is ready; a server starts it, before any ask, as soon
as a device that reports a running release and has deltas on gets a new target); its cost is
the "server CPU / wall" column (CPU time of the generating thread, per delta; wall includes
the registry reads). "docker load alone" is the floor of the load transport: the same engine
loading, from memory, an archive of just the new layers (cut from `docker save` of the image;
nothing to download, decode or check), timed the same way in the same runs.

| update | delta sent | registry pull | fewer bytes | delta through {mine} (default) | delta through {other} | pull | `docker load` of the new layers alone | server CPU / wall to make the delta | new layers (uncompressed) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{table}

Where each delta transport's time goes (medians): download = asking the server and receiving
the delta (one request when it is ready); reference = rebuilding the source layers' streams
from the data root into zstd's reference (a worker thread: both transports start handing the
image to the engine meanwhile, the first layer byte waits for it); registry: pull = from
starting the local registry until
the engine's pull of the new layers ended (decoding as the engine fetches), register =
`POST /images/load` of the image config alone and its check; load: decode = zstd against the
reference, in a worker thread, overlapping send; send = streaming the archive until its last
byte (from the start of the upload, which begins before the reference is ready); engine = `docker load`'s own work after the last byte and the check that it lists the
image:

{chr(10).join(where)}

Every run, in seconds, in the order measured (the four paths alternate):

{chr(10).join(every)}

Targets: at least 10× fewer bytes than a registry pull for the one-file change and at least
50× for the identical rebuild; time to update no worse than the pull on loopback.

{checks(lines)}
"""
    write_section("delta", section)
    print(section)


if __name__ == "__main__":
    main()
