"""Checks that talk to something: DNS resolvers, the API endpoint, the supervisor, the engine.

Failures say which server and which kind of failure (refused, timed out, unresolvable, TLS),
because each points to a different cause (seed 000 §6).
"""

from __future__ import annotations

import http.client
import ipaddress
import random
import socket
import ssl
import struct
from dataclasses import dataclass
from urllib.parse import urlparse

from edgefleet.diagnose import netstack
from edgefleet.diagnose.checks import CheckResult
from edgefleet.diagnose.host import Host

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Resolver:
    """A DNS server to ask; port 53 unless a test says otherwise."""

    address: str
    port: int = 53


def resolvers(*, host: Host, dns_servers: list[str]) -> list[Resolver]:
    """The host's resolv.conf nameservers and config.json's dnsServers."""
    found = [line.split()[1] for line in (host.read("/etc/resolv.conf") or "").splitlines()
             if line.startswith("nameserver") and len(line.split()) > 1]
    return [Resolver(a) for a in dict.fromkeys([*found, *dns_servers])]


def dns_query(*, name: str, resolver: Resolver, timeout_s: float = TIMEOUT_S) -> str:
    """Send one A query; returns "" on an answer, or why it failed."""
    qid = random.randint(0, 0xFFFF)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(
        ">HH", 1, 1)
    family = socket.AF_INET6 if ":" in resolver.address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect((resolver.address, resolver.port))
            sock.send(packet)
            reply = sock.recv(4096)
        except TimeoutError:
            return "no answer (timed out)"
        except ConnectionRefusedError:
            return "refused (no DNS server there)"
        except OSError as exc:
            return f"unreachable ({exc.strerror or exc})"
    if len(reply) < 12 or struct.unpack(">H", reply[:2])[0] != qid:
        return "malformed answer"
    rcode = reply[3] & 0x0F
    answers = struct.unpack(">H", reply[6:8])[0]
    if rcode != 0 or answers == 0:
        return f"could not resolve {name} (rcode {rcode})"
    return ""


def check_dns(*, host: Host, api_host: str, dns_servers: list[str],
              port_override: int | None = None) -> CheckResult:
    servers = resolvers(host=host, dns_servers=dns_servers)
    if not servers:
        return CheckResult("check_dns", True, "not applicable: no DNS servers configured")
    if port_override is not None:
        servers = [Resolver(s.address, port_override) for s in servers]
    problems = [f"DNS server {s.address}: {why}" for s in servers
                if (why := dns_query(name=api_host, resolver=s))]
    if problems:
        return CheckResult("check_dns", False,
                           "Some DNS issues detected:\n" + "\n".join(problems))
    return CheckResult("check_dns", True, f"All {len(servers)} DNS servers resolve {api_host}")


def probe_ping(*, url: str, root_ca_pem: str | None = None, timeout_s: float = TIMEOUT_S,
               family: int = socket.AF_UNSPEC) -> tuple[str, str]:
    """GET <url>/ping → (kind, detail); kind is ok, unresolvable, refused, timeout, ssl, http.
    `family` (AF_INET, AF_INET6) forces one IP stack."""
    parsed = urlparse(url)
    hostname = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    target = hostname
    if family != socket.AF_UNSPEC:
        found = netstack.family_addresses(hostname=hostname, port=port, family=family)
        if not found:
            v = "IPv6" if family == socket.AF_INET6 else "IPv4"
            return "unresolvable", f"{hostname} has no {v} address"
        target = found[0]
    try:
        raw = socket.create_connection((target, port), timeout=timeout_s)
    except socket.gaierror as exc:
        return "unresolvable", f"{hostname} does not resolve ({exc.strerror})"
    except ConnectionRefusedError:
        return "refused", f"{hostname}:{port} refused the connection"
    except TimeoutError:
        return "timeout", f"{hostname}:{port} did not answer within {timeout_s:.0f} s"
    except OSError as exc:
        return "refused", f"{hostname}:{port} unreachable ({exc.strerror or exc})"
    try:
        if parsed.scheme == "https":
            ctx = ssl.create_default_context()
            if root_ca_pem:
                ctx.load_verify_locations(cadata=root_ca_pem)
            try:
                raw = ctx.wrap_socket(raw, server_hostname=hostname)
            except (ssl.SSLError, ssl.CertificateError) as exc:
                return "ssl", (f"TLS failed ({exc.__class__.__name__}: {exc}): a firewall or "
                               "deep packet inspection may be intercepting traffic; set "
                               "balenaRootCA in config.json if this network re-signs TLS")
        conn = http.client.HTTPConnection(hostname, port, timeout=timeout_s)
        conn.sock = raw
        conn.request("GET", parsed.path.rstrip("/") + "/ping", headers={"Host": hostname})
        response = conn.getresponse()
        body = response.read(64).decode(errors="replace").strip()
    except TimeoutError:
        return "timeout", f"{hostname}:{port} accepted but did not answer"
    except OSError as exc:
        return "http", f"request failed: {exc}"
    finally:
        raw.close()
    if response.status == 200 and body == "OK":
        return "ok", f"{url}/ping answered OK"
    return "http", f"{url}/ping answered {response.status} {body!r}"


def _ip_version(hostname: str) -> int | None:
    """4 or 6 for an IP address literal, None for a host name."""
    try:
        return ipaddress.ip_address(hostname).version
    except ValueError:
        return None


def check_networking(*, api_endpoint: str | None, root_ca_pem: str | None = None,
                     registry_endpoint: str | None = None, host: Host | None = None,
                     registry_credentials: tuple[str, str] | None = None) -> CheckResult:
    """API /ping (TLS failures told apart), the registry (reachable, login), and the IPv4 and
    IPv6 stacks (/ping over each; IPv6 only with an IPv6 default route)."""
    if not api_endpoint and not registry_endpoint:
        return CheckResult("check_networking", True,
                           "not applicable: unmanaged device (no apiEndpoint)")
    problems: list[str] = []
    passed: list[str] = []
    if api_endpoint:
        kind, detail = probe_ping(url=api_endpoint, root_ca_pem=root_ca_pem)
        (passed if kind == "ok" else problems).append(
            detail if kind == "ok" else f"API {kind} failure: {detail}")
        literal = _ip_version(urlparse(api_endpoint).hostname or "")
        v6_route = host is not None and netstack.has_default_route(host=host, ipv6=True)
        stacks = [("IPv4", socket.AF_INET, literal in (None, 4), "no IPv4 default route"),
                  ("IPv6", socket.AF_INET6, v6_route and literal in (None, 6),
                   "no IPv6 default route")]
        for name, family, applies, why in stacks:
            if literal is not None and not applies:
                why = f"the API endpoint is an IPv{literal} address"
            if not applies:
                passed.append(f"{name} stack: not applicable ({why})")
                continue
            kind, detail = probe_ping(url=api_endpoint, root_ca_pem=root_ca_pem, family=family)
            if kind == "ok":
                passed.append(f"{name} stack: OK")
            else:
                problems.append(f"{name} stack: {kind} failure: {detail}")
    if registry_endpoint:
        why = netstack.probe_registry(registry=registry_endpoint,
                                      credentials=registry_credentials)
        if why:
            problems.append(f"Registry: {why}")
        else:
            passed.append(f"Registry {registry_endpoint}: reachable, login OK")
    if problems:
        return CheckResult("check_networking", False,
                           "Some networking issues detected:\n" + "\n".join(problems))
    return CheckResult("check_networking", True,
                       "No networking issues detected: " + "; ".join(passed))


def check_supervisor(*, port: int, address: str = "127.0.0.1") -> CheckResult:
    """The supervisor answers /v1/healthy with 200 (the status code counts, not a connection)."""
    conn = http.client.HTTPConnection(address, port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", "/v1/healthy")
        status = conn.getresponse().status
    except ConnectionRefusedError:
        return CheckResult("check_supervisor", False,
                           f"Supervisor is not running (nothing listens on {address}:{port})")
    except OSError as exc:
        return CheckResult("check_supervisor", False, f"Supervisor did not answer: {exc}")
    finally:
        conn.close()
    if status == 200:
        return CheckResult("check_supervisor", True, "Supervisor is running and healthy")
    return CheckResult("check_supervisor", False, f"Supervisor is unhealthy (HTTP {status})")
