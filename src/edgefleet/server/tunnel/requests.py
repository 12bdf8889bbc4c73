"""What a user may ask a device's tunnel for, checked before anything reaches the device."""

from __future__ import annotations

from typing import Any

KINDS = ("shell", "command", "tcp")


class BadRequest(Exception):
    """A stream request that is not allowed; `str()` says what to change."""


def _int(doc: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = doc.get(key, default)
    if not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{key} must be a whole number from {low} to {high}")
    return value


LAN_PORT = 22222
"""Where a device configured for it listens on its LAN for sessions through a gateway."""


def route(doc: dict[str, Any]) -> dict[str, Any] | None:
    """`{via, ip, port}` when the session goes through a gateway device, else None."""
    via = doc.get("via")
    if via is None:
        return None
    ip = doc.get("ip")
    if not isinstance(via, str) or not 0 < len(via) <= 64:
        raise BadRequest("via must name a gateway device")
    if ip is not None and (not isinstance(ip, str) or not 0 < len(ip) <= 255):
        raise BadRequest("ip must be an address")
    return {"via": via, "ip": ip, "port": _int(doc, "lan_port", LAN_PORT, 1, 65535)}


def checked(doc: dict[str, Any]) -> dict[str, Any]:
    """The request to send to the device (only known fields), or BadRequest."""
    kind = doc.get("kind")
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    service = doc.get("service")
    if service is not None and (not isinstance(service, str) or not 0 < len(service) <= 255):
        raise BadRequest("service must be a service name")
    if kind == "tcp":
        host = doc.get("host", "127.0.0.1")
        if not isinstance(host, str) or not 0 < len(host) <= 255:
            raise BadRequest("host must be an address")
        return {"kind": "tcp", "host": host, "port": _int(doc, "port", 0, 1, 65535)}
    command = doc.get("command")
    if kind == "command" and (not isinstance(command, str) or not command):
        raise BadRequest("a command session needs a command")
    if command is not None and (not isinstance(command, str) or len(command) > 65536):
        raise BadRequest("command must be a string (at most 64 KiB)")
    out: dict[str, Any] = {"kind": kind, "service": service, "command": command}
    if kind == "shell":
        out["rows"] = _int(doc, "rows", 24, 1, 1000)
        out["cols"] = _int(doc, "cols", 80, 1, 1000)
        term = doc.get("term", "xterm")
        out["term"] = term if isinstance(term, str) and term.isprintable() else "xterm"
    return out


def describe(request: dict[str, Any]) -> tuple[str, str, str]:
    """(kind, target, command) for the audit trail."""
    if request["kind"] == "tcp":
        return "tcp", f"{request['host']}:{request['port']}", ""
    return request["kind"], request.get("service") or "host", request.get("command") or ""
