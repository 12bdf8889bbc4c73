"""Host health checks (device-diagnostics' thresholds and wording, compat §10), over a `Host`.

Each check returns a `CheckResult`; one that cannot run on this host says why ("not applicable:
...") instead of passing silently.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgefleet import __version__
from edgefleet.diagnose.host import Host

LOW_MEMORY_PERCENT = 10
LOW_DISK_PERCENT = 10
HIGH_TEMP_C = 80
SLOW_WRITE_MS = 1000
EXPANSION_PERCENT = 80
_THROTTLE = re.compile(r"throttl|temperature above threshold", re.IGNORECASE)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict, in device-diagnostics' shape."""

    name: str
    success: bool
    status: str


def _na(name: str, why: str) -> CheckResult:
    return CheckResult(name, True, f"not applicable: {why}")


def _meminfo(host: Host) -> dict[str, int]:
    out = {}
    for line in (host.read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            out[key] = int(rest.split()[0])
    return out


def check_memory(host: Host) -> CheckResult:
    info = _meminfo(host)
    total = info.get("MemTotal")
    if not total:
        return _na("check_memory", "no /proc/meminfo")
    available = info.get("MemAvailable")
    if available is None:
        available = info.get("MemFree", 0) + info.get("Cached", 0) + info.get("Buffers", 0)
    pct = 100 * available / total
    if pct < LOW_MEMORY_PERCENT:
        return CheckResult("check_memory", False,
                           f"Low memory: {pct:.0f}% ({available // 1024} MB) available")
    return CheckResult("check_memory", True, f"{pct:.0f}% memory available")


def _kernel_log(host: Host) -> str | None:
    found = host.command(["dmesg"])
    return found[1] if found and found[0] == 0 else None


def check_temperature(host: Host) -> CheckResult:
    zones = host.glob("/sys/class/thermal/thermal*/temp")
    if not zones:
        return _na("check_temperature", "no thermal zones")
    problems = []
    for zone in zones:
        try:
            celsius = int(zone.read_text().strip()) / 1000
        except (OSError, ValueError):
            continue
        if celsius >= HIGH_TEMP_C:
            problems.append(f"{zone.parent.name} at {celsius:.0f} °C (>= {HIGH_TEMP_C} °C)")
    log = _kernel_log(host) or ""
    throttled = [line for line in log.splitlines() if _THROTTLE.search(line)]
    if throttled:
        problems.append(f"CPU throttling in the kernel log ({len(throttled)} lines, last:"
                        f" {throttled[-1].strip()})")
    if problems:
        return CheckResult("check_temperature", False,
                           "Some temperature issues detected:\n" + "\n".join(problems))
    return CheckResult("check_temperature", True, "No temperature issues detected")


def check_under_voltage(host: Host) -> CheckResult:
    log = _kernel_log(host)
    if log is None:
        return _na("check_under_voltage", "kernel log (dmesg) not readable")
    count = log.count("Under-voltage detected!")
    if count:
        return CheckResult("check_under_voltage", False,
                           f"{count} under-voltage events detected in the kernel log; check"
                           " the power supply")
    return CheckResult("check_under_voltage", True, "No under-voltage events detected")


def check_diskspace(host: Host) -> CheckResult:
    usage = host.disk_usage(host.data_root)
    if usage is None:
        return _na("check_diskspace", f"engine data root {host.data_root} not found")
    if usage.free_percent < LOW_DISK_PERCENT:
        return CheckResult("check_diskspace", False,
                           f"Low disk space on {host.data_root}: {usage.free_percent:.1f}% free"
                           f" ({usage.free // 2**20} MB of {usage.total // 2**20} MB)")
    return CheckResult("check_diskspace", True,
                       f"{usage.free_percent:.0f}% free on {host.data_root}")


def check_write_latency(host: Host) -> CheckResult:
    stats = host.read("/proc/diskstats")
    if stats is None:
        return _na("check_write_latency", "no /proc/diskstats")
    slow = []
    for line in stats.splitlines():
        f = line.split()
        if len(f) < 11 or f[2].startswith(("loop", "ram", "zram")):
            continue
        writes, ms_writing = int(f[7]), int(f[10])
        if writes and ms_writing / writes > SLOW_WRITE_MS:
            slow.append(f"{f[2]}: {ms_writing / writes:.0f} ms per write")
    if slow:
        return CheckResult("check_write_latency", False,
                           "Slow disk writes detected:\n" + "\n".join(slow))
    return CheckResult("check_write_latency", True, "No slow disk writes detected")


def _mount_of(host: Host, path: str) -> tuple[str, str, list[str]] | None:
    best: tuple[str, str, list[str]] | None = None
    for line in (host.read("/proc/mounts") or "").splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        dev, point, opts = f[0], f[1], f[3].split(",")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and (
            best is None or len(point) > len(best[1])
        ):
            best = (dev, point, opts)
    return best


def check_localdisk(host: Host) -> CheckResult:
    mount = _mount_of(host, host.data_root)
    if mount is None:
        return _na("check_localdisk", "no /proc/mounts entry for the data root")
    dev, point, opts = mount
    problems = []
    if "ro" in opts:
        problems.append(f"data partition {dev} on {point} is mounted read-only")
    name = Path(dev).name
    part = host.path(f"/sys/class/block/{name}")
    if (part / "partition").exists():
        disk = part.resolve().parent
        try:
            disk_size = int((disk / "size").read_text())
            used = sum(int((p / "size").read_text()) for p in disk.iterdir()
                       if (p / "partition").exists())
            if disk_size and 100 * used / disk_size < EXPANSION_PERCENT:
                problems.append(f"partitions use {100 * used / disk_size:.0f}% of {disk.name}:"
                                " the data partition was not expanded")
        except (OSError, ValueError):
            pass
    if problems:
        return CheckResult("check_localdisk", False,
                           "Some local disk issues detected:\n" + "\n".join(problems))
    return CheckResult("check_localdisk", True, "No local disk issues detected")


def check_os(host: Host) -> CheckResult:
    text = host.read("/etc/os-release")
    if text is None:
        return CheckResult("check_os", False, "No /etc/os-release: unknown operating system")
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    name = fields.get("PRETTY_NAME", fields.get("NAME", "unknown")).strip('"')
    return CheckResult("check_os", True, f"Supported OS: {name}")


def check_os_rollback(host: Host) -> CheckResult:
    crumbs = [p for p in ("/mnt/state/rollback-health-breadcrumb",
                          "/mnt/state/rollback-altboot-breadcrumb",
                          "/mnt/state/rollback-health-failed")
              if host.path(p).exists()]
    if crumbs:
        return CheckResult("check_os_rollback", False,
                           "OS rollback detected: " + ", ".join(Path(c).name for c in crumbs))
    return CheckResult("check_os_rollback", True, "No OS rollbacks detected")


def check_timesync(host: Host) -> CheckResult:
    found = host.command(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if found is None or found[0] != 0:
        return _na("check_timesync", "timedatectl is not available on this host")
    if found[1].strip() == "yes":
        return CheckResult("check_timesync", True, "Time is synchronized")
    return CheckResult("check_timesync", False,
                       "Time is not synchronized (NTP): TLS certificates may be rejected as"
                       " not yet valid")


FINGERPRINTS = ("/balenaos.fingerprint", "/resinos.fingerprint")
FINGERPRINT_SKIP = ("/var/cache/ldconfig/aux-cache",)


def check_rootfs_fingerprint(host: Host) -> CheckResult:
    """Compare every file's MD5 with the OS image's fingerprint file (seed 000 §11.2)."""
    name = next((f for f in FINGERPRINTS if host.path(f).exists()), None)
    if name is None:
        return _na("check_rootfs_fingerprint", "no OS fingerprint file")
    bad = []
    for line in (host.read(name) or "").splitlines():
        digest, _, path = line.strip().partition("  ")
        if not path or path in FINGERPRINT_SKIP:
            continue
        try:
            md5 = hashlib.md5(usedforsecurity=False)
            with host.path(path).open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    md5.update(block)
        except OSError:
            bad.append(f"{path}: missing")
            continue
        if md5.hexdigest() != digest:
            bad.append(f"{path}: differs from the image")
    if bad:
        shown = "\n".join(bad[:20]) + (f"\n... and {len(bad) - 20} more" if len(bad) > 20
                                        else "")
        return CheckResult("check_rootfs_fingerprint", False,
                           f"{len(bad)} root filesystem files do not match {name} (possible "
                           f"media corruption):\n{shown}")
    return CheckResult("check_rootfs_fingerprint", True, f"All files match {name}")


CHECKS: tuple[Callable[[Host], CheckResult], ...] = (
    check_os, check_under_voltage, check_memory, check_temperature, check_diskspace,
    check_write_latency, check_localdisk, check_timesync, check_os_rollback,
    check_rootfs_fingerprint,
)


def run_checks(*, host: Host) -> dict[str, Any]:
    """Every host check, in device-diagnostics' JSON shape."""
    results = []
    for check in CHECKS:
        try:
            results.append(check(host))
        except Exception as exc:
            results.append(CheckResult(check.__name__, False, f"check failed to run: {exc}"))
    return {"diagnose_version": __version__, "checks": [asdict(r) for r in results]}
