"""Device metrics and identity for state reports, read from /proc, /sys and the data dir."""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORED_INTERFACES = re.compile(
    r"^(?:lo|(?:balena|docker|rce|tun|wg|efbr)\d+|resin-vpn|resin-dns|supervisor0|"
    r"balena-redsocks|balena-hotspot|balena-dns|resin-redsocks|veth.*|br-.*)$")
"""Interfaces balena leaves out of ip_address/mac_address (engine bridges, VPN, loopback)."""
SIOCGIFADDR = 0x8915


def _cpu_times(text: str) -> tuple[int, int]:
    """(busy, total) jiffies from the `cpu ` line of /proc/stat."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return sum(values) - idle, sum(values)
    return 0, 0


def meminfo_mb(*, text: str) -> tuple[int, int]:
    """(used, total) MB from /proc/meminfo: used = MemTotal - MemAvailable."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0])
    total = fields.get("MemTotal", 0)
    available = fields.get("MemAvailable", fields.get("MemFree", 0))
    return (total - available) // 1024, total // 1024


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _ipv4(name: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s",
                                                                       name[:15].encode()))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def network_identity(*, sys_root: Path = Path("/sys")) -> dict[str, str]:
    """`ip_address` and `mac_address`: space-separated, of the device's real interfaces."""
    ips: list[str] = []
    macs: list[str] = []
    with contextlib.suppress(OSError):
        for _, name in socket.if_nameindex():
            if IGNORED_INTERFACES.match(name):
                continue
            ip = _ipv4(name)
            if ip:
                ips.append(ip)
            mac = _read(sys_root / "class" / "net" / name / "address").strip()
            if mac and mac != "00:00:00:00:00:00":
                macs.append(mac.upper())
    return {"ip_address": " ".join(ips), "mac_address": " ".join(macs)}


def os_version(*, root: Path = Path("/")) -> str:
    """PRETTY_NAME of /etc/os-release (balenaOS reports e.g. "balenaOS 5.3.0")."""
    for line in _read(root / "etc" / "os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


@dataclass
class Metrics:
    """Reads metrics; CPU usage is measured between two successive calls."""

    data_dir: Path
    proc: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    _last_cpu: tuple[int, int] = field(default=(0, 0))

    def read(self) -> dict[str, Any]:
        """cpu_usage (%), cpu_temp (°C, when a thermal zone exists), memory and storage (MB)."""
        busy, total = _cpu_times(_read(self.proc / "stat"))
        last_busy, last_total = self._last_cpu
        self._last_cpu = (busy, total)
        cpu = 0
        if total > last_total:
            cpu = round(100 * (busy - last_busy) / (total - last_total))
        used, mem_total = meminfo_mb(text=_read(self.proc / "meminfo"))
        out: dict[str, Any] = {"cpu_usage": cpu, "memory_usage": used,
                               "memory_total": mem_total, "is_undervolted": False}
        with contextlib.suppress(OSError):
            disk = shutil.disk_usage(self.data_dir)
            out["storage_usage"] = disk.used // 2**20
            out["storage_total"] = disk.total // 2**20
        temp = _read(self.sys_root / "class" / "thermal" / "thermal_zone0" / "temp").strip()
        if temp.lstrip("-").isdigit():
            out["cpu_temp"] = round(int(temp) / 1000)
        return out
