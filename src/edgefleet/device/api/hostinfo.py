"""Facts about the host for `/v1/device` and `/v2/local/device-info`, read from /proc, /sys
and /etc (no commands)."""

from __future__ import annotations

import platform
import socket
import struct
from pathlib import Path

_ARCH = {"x86_64": "amd64", "aarch64": "aarch64", "armv7l": "armv7hf", "armv6l": "rpi",
         "i686": "i386", "i386": "i386"}
_SKIP = ("lo", "docker", "br-", "veth", "efbr", "supervisor0", "balena", "resin")


def arch() -> str:
    """balena's architecture name for this machine (amd64, aarch64, armv7hf, ...)."""
    return _ARCH.get(platform.machine(), platform.machine())


def _interfaces() -> list[str]:
    try:
        names = sorted(p.name for p in Path("/sys/class/net").iterdir())
    except OSError:
        return []
    return [n for n in names if not n.startswith(_SKIP)]


def mac_addresses() -> list[str]:
    """MAC addresses of the physical-looking interfaces."""
    out = []
    for name in _interfaces():
        try:
            mac = Path(f"/sys/class/net/{name}/address").read_text().strip()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00":
            out.append(mac.upper())
    return out


def ip_addresses() -> list[str]:
    """IPv4 addresses of those interfaces that carry routes (SIOCGIFADDR)."""
    try:
        text = Path("/proc/net/route").read_text()
    except OSError:
        return []
    wanted = set(_interfaces())
    found: list[str] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) > 1 and parts[0] in wanted:
            addr = _address_of(parts[0])
            if addr and addr not in found:
                found.append(addr)
    return found


def _address_of(interface: str) -> str | None:
    try:
        import fcntl

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                                 struct.pack("256s", interface[:15].encode()))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None


def os_version() -> str:
    """PRETTY_NAME of /etc/os-release."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()
