"""Update downtime benchmark (issue 3): how long a service is down while the supervisor
replaces it with a new release, under `download-then-kill` and under `hand-over`.

Downtime = the new container's `start` event minus the old container's `die` event, from the
engine's event stream (0 when the new one started first, as hand-over intends). Each run
pulls the new image for real (it is deleted from the engine first). The service is a small
busybox loop that exits on SIGTERM at once; in hand-over runs the new container signals
completion by writing /tmp/balena/handover-complete 0.5 s after it starts.

Run: .venv/bin/python bench/update.py [--runs 5]   (needs scripts/setup: dockerd + registry)
Writes the "## update" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.verdicts import check, checks, write_section
from tests.device.conftest import cleanup_scope, make_device
from tests.support import images

from edgefleet.device.targets import TargetSource
from edgefleet.engine.docker import DockerEngine
from edgefleet.model.engine_events import EngineEvent

SERVE = "trap 'exit 0' TERM; {pre}while true; do sleep 1 & wait $!; done"
COMPOSE = """
services:
  app:
    command: ["sh", "-c", "{cmd}"]
    labels: {{io.balena.update.strategy: {strategy}}}
"""


def compose(strategy: str, *, signal: bool) -> str:
    pre = "(sleep 0.5; touch /tmp/balena/handover-complete) & " if signal else ""
    return COMPOSE.format(cmd=SERVE.format(pre=pre), strategy=strategy)


async def one_run(strategy: str, refs: tuple[str, str], data: Path) -> float:
    """Downtime in ms of one v1 → v2 update."""
    scope = f"bu{uuid.uuid4().hex[:8]}"
    dev = make_device(data_dir=data / scope, scope=scope, app_uuid=f"app{scope}")
    watcher = DockerEngine(scope=scope)
    seen: list[EngineEvent] = []

    async def watch() -> None:
        async for ev in watcher.events():
            if ev.type == "container" and ev.action in ("start", "die"):
                seen.append(ev)

    task = asyncio.create_task(watch())
    try:
        handover = strategy == "hand-over"
        dev.supervisor.set_target(target=dev.compose_target(
            compose(strategy, signal=handover), {"app": refs[0]}), source=TargetSource.DIRECT)
        await dev.converge()
        old = (await dev.containers())["app"].id
        images.remove_local(refs[1])  # the update downloads for real
        await asyncio.sleep(0.3)
        dev.supervisor.set_target(target=dev.compose_target(
            compose(strategy, signal=handover), {"app": refs[1]}, commit="c2", release_id=2),
            source=TargetSource.DIRECT)
        await dev.converge(rounds=40)
        new = (await dev.containers())["app"].id
        await asyncio.sleep(0.5)
        died = min(e.time_nano for e in seen if e.id == old and e.action == "die")
        started = min(e.time_nano for e in seen if e.id == new and e.action == "start")
        return max(0.0, (started - died) / 1e6)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watcher.close()
        await dev.engine.close()
        dev.store.close()
        cleanup_scope(scope)


async def main(runs: int) -> dict[str, list[float]]:
    tag = uuid.uuid4().hex[:8]
    v1 = images.build_and_push(f"bench-upd-{tag}", "v1", keep_local=True)
    v2 = images.build_and_push(f"bench-upd-{tag}", "v2", extra="RUN echo 2 > /v")
    data = Path(tempfile.mkdtemp(prefix="bench-update-"))
    results: dict[str, list[float]] = {"download-then-kill": [], "hand-over": []}
    try:
        for _ in range(runs):  # interleaved, so both see the same machine load
            for strategy in results:
                ms = await one_run(strategy, (v1.ref, v2.ref), data)
                results[strategy].append(ms)
                print(f"{strategy}: {ms:.0f} ms", flush=True)
    finally:
        shutil.rmtree(data, ignore_errors=True)
        images.remove_local(v1.ref)
        images.remove_local(v2.ref)
    return results


def write(results: dict[str, list[float]], runs: int) -> None:
    dtk, hand = results["download-then-kill"], results["hand-over"]
    verdict = checks([
        check("download-then-kill downtime under 1000 ms (median)",
              f"{statistics.median(dtk):.0f} ms", statistics.median(dtk) < 1000),
        check("hand-over downtime 0 ms in every run", f"max {max(hand):.0f} ms", max(hand) == 0)])
    rows = "\n".join(
        f"| {s} | {statistics.median(v):.0f} ms | {max(v):.0f} ms | {target} |"
        for s, v, target in (
            ("download-then-kill", results["download-then-kill"], "< 1000 ms"),
            ("hand-over (service signals completion)", results["hand-over"], "0 ms")))
    section = f"""## update

Command: `.venv/bin/python bench/update.py --runs {runs}` (2-core VM, dockerd 20.10, local
registry; each run pulls the new image; the service exits on SIGTERM at once).

Downtime = new container's `start` event - old container's `die` event (engine events);
0 when the new container was already running.

| strategy | median | max | target |
| --- | --- | --- | --- |
{rows}

Under download-then-kill the supervisor pulls before the kill, so the downtime is remove +
create + start of the new container. Under hand-over the old container is killed only after the new
one runs and has written /tmp/balena/handover-complete (by design; the table shows the gap
measured).

{verdict}
"""
    write_section("update", section)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    found = asyncio.run(main(args.runs))
    write(found, args.runs)
