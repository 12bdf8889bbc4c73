"""Sub-tests of check_networking beyond the API ping: the registry (reachable, and a login
with the device's credentials when it asks for them) and the IPv4 and IPv6 stacks (the API
`/ping` over each address family; IPv6 only where the host has an IPv6 default route, as
device-diagnostics does)."""

from __future__ import annotations

import re
import socket

import httpx

from edgefleet.diagnose.host import Host
from edgefleet.engine.registry import describe_http_error, is_insecure

TIMEOUT_S = 3.0


def has_default_route(*, host: Host, ipv6: bool) -> bool:
    """True when the routing table (/proc/net/route, /proc/net/ipv6_route) has a default."""
    if ipv6:
        for line in (host.read("/proc/net/ipv6_route") or "").splitlines():
            parts = line.split()
            if len(parts) >= 10 and parts[0] == "0" * 32 and parts[1] == "00" and (
                parts[9] != "lo"
            ):
                return True
        return False
    for line in (host.read("/proc/net/route") or "").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[1] == "00000000" and parts[7] == "00000000":
            return True
    return False


def family_addresses(*, hostname: str, port: int, family: int) -> list[str]:
    """The addresses of `hostname` in one family ([] when it has none)."""
    try:
        infos = socket.getaddrinfo(hostname, port, family, socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return list(dict.fromkeys(str(i[4][0]) for i in infos))


def probe_registry(*, registry: str, credentials: tuple[str, str] | None = None,
                   timeout_s: float = TIMEOUT_S) -> str:
    """"" when `registry` answers /v2/ and accepts us (anonymously or with `credentials`,
    through a Basic or Bearer-token challenge); else why not."""
    scheme = "http" if is_insecure(registry=registry, insecure=()) else "https"
    url = f"{scheme}://{registry}/v2/"
    try:
        with httpx.Client(timeout=timeout_s) as client:
            resp = client.get(url)
            if resp.status_code == 200:
                return ""
            if resp.status_code != 401:
                return f"registry {registry} answered HTTP {resp.status_code} on /v2/"
            if credentials is None:
                return f"registry {registry} requires a login and no credentials are set"
            challenge = resp.headers.get("www-authenticate", "")
            auth = httpx.BasicAuth(*credentials)
            if challenge.lower().startswith("bearer"):
                params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
                tok = client.get(params.pop("realm", ""), params=params, auth=auth)
                if tok.status_code != 200:
                    return (f"registry login failed: token endpoint answered HTTP "
                            f"{tok.status_code}")
                body = tok.json()
                token = body.get("token") or body.get("access_token")
                resp = client.get(url, headers={"Authorization": f"Bearer {token}"})
            else:
                resp = client.get(url, auth=auth)
            if resp.status_code == 200:
                return ""
            return f"registry login failed: HTTP {resp.status_code} with the device credentials"
    except httpx.HTTPError as exc:
        return f"registry {registry}: {describe_http_error(exc)}"
