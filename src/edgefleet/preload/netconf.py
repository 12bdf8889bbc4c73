"""A NetworkManager keyfile giving the device a static IPv4 address at first boot, dropped in
the boot partition's `system-connections/` (balenaOS copies it to
/etc/NetworkManager/system-connections, seed 002)."""

from __future__ import annotations

import ipaddress
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from edgefleet.preload.errors import PreloadError


@dataclass(frozen=True)
class StaticIp:
    """Address with prefix, gateway, DNS servers, and the interface (empty: any ethernet)."""

    address: str
    gateway: str
    dns: tuple[str, ...]
    interface: str = ""
    name: str = "preload-static-ip"


def parse_static_ip(*, address: str, gateway: str | None, dns: str | None,
                    interface: str = "") -> StaticIp:
    """Validate the CLI values (`10.0.0.10/24`, `10.0.0.1`, `1.1.1.1,8.8.8.8`)."""
    if "/" not in address:
        raise PreloadError(f"--static-ip {address!r} needs a prefix length, like 10.0.0.10/24")
    try:
        iface = ipaddress.IPv4Interface(address)
        gw = ipaddress.IPv4Address(gateway) if gateway else None
        servers = tuple(str(ipaddress.ip_address(s.strip()))
                        for s in (dns or "").split(",") if s.strip())
    except ValueError as exc:
        raise PreloadError(f"static IP settings: {exc}") from None
    if gw is None:
        raise PreloadError("--static-ip needs --gateway")
    if gw not in iface.network:
        raise PreloadError(f"gateway {gw} is not in {iface.network}")
    return StaticIp(address=str(iface), gateway=str(gw), dns=servers, interface=interface)


def keyfile(cfg: StaticIp) -> str:
    """The keyfile text (the uuid is derived from the name, so re-running changes nothing)."""
    lines = ["[connection]", f"id={cfg.name}",
             f"uuid={uuid.uuid5(uuid.NAMESPACE_DNS, cfg.name + cfg.interface)}",
             "type=ethernet", "autoconnect=true"]
    if cfg.interface:
        lines.append(f"interface-name={cfg.interface}")
    lines += ["", "[ipv4]", "method=manual", f"address1={cfg.address},{cfg.gateway}"]
    if cfg.dns:
        lines.append("dns=" + "".join(f"{d};" for d in cfg.dns))
    lines += ["", "[ipv6]", "method=auto", ""]
    return "\n".join(lines)


def boot_check(boot: Path) -> None:
    """Refuse a --boot that is not a directory."""
    if not boot.is_dir():
        raise PreloadError(f"--boot {boot} is not a directory (mount the boot partition)")


def write_keyfile(*, boot: Path, cfg: StaticIp) -> Path:
    """Write `<boot>/system-connections/<name>` (mode 600, as NetworkManager requires)."""
    folder = boot / "system-connections"
    folder.mkdir(exist_ok=True)
    path = folder / cfg.name
    tmp = folder / f".{cfg.name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(keyfile(cfg))
    os.replace(tmp, path)
    return path
