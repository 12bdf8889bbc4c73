"""OpenAPI `links`: where an operation's reply names what another operation takes as a
parameter. One function, used by the fleet server's and the supervisor's documents; clients
and stateful testers (schemathesis) follow the links."""

from __future__ import annotations

from typing import Any

Targets = tuple[tuple[str, tuple[str, ...]], ...]
Link = tuple[str, str, str, str, str, Targets]
"""(method, path, status, JSON pointer into the reply, parameter, ((path, methods), ...))."""


def add_links(doc: dict[str, Any], *, links: tuple[Link, ...]) -> dict[str, Any]:
    """`doc` with those of `links` whose operations both exist (in place)."""
    paths = doc.get("paths", {})
    for method, path, status, pointer, param, targets in links:
        reply = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if reply is None:
            continue
        found = reply.setdefault("links", {})
        for target_path, methods in targets:
            for target_method in methods:
                op = paths.get(target_path, {}).get(target_method)
                if op is None or "operationId" not in op:
                    continue
                found[op["operationId"]] = {
                    "operationId": op["operationId"],
                    "parameters": {param: f"$response.body#{pointer}"}}
        if not found:
            del reply["links"]
    return doc
