"""Wall time of a full health-check run on this machine (issue 6 target: under 2 s).

Run: .venv/bin/python bench/diagnose.py [--runs 10]
The config used points the API and supervisor checks at loopback ports, so every check runs
(and the network ones fail fast, as on a device with no connectivity). Writes the "## diagnose"
section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.verdicts import check, checks, write_section

from edgefleet.diagnose.host import Host
from edgefleet.diagnose.suite import run_device_checks
from edgefleet.model.config import DeviceConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    config = DeviceConfig.model_validate({"apiEndpoint": "https://127.0.0.1:9",
                                          "listenPort": 9})
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        report = run_device_checks(host=Host(), config=config)
        times.append(time.perf_counter() - start)
    names = ", ".join(c["name"] for c in report["checks"])
    verdict = checks([check("every full check run under 2 s", f"max {max(times) * 1000:.0f} ms",
                            max(times) < 2.0)])
    section = f"""## diagnose

Command: `.venv/bin/python bench/diagnose.py --runs {args.runs}` (this 2-core VM).

| what | median | max |
| --- | --- | --- |
| full check run ({len(report["checks"])} checks: {names}) | {statistics.median(times)*1000:.0f} ms | {max(times)*1000:.0f} ms |

Target: a full check run under 2 s. The API and supervisor checks here hit loopback ports with
nothing behind them (the fast-failure path); the DNS check is not applicable for an IP endpoint.

{verdict}
"""
    write_section("diagnose", section)
    print(section)


if __name__ == "__main__":
    main()
