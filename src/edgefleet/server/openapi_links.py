"""OpenAPI `links` in the user API's document: where an operation's reply names what another
operation takes as a path parameter (create a fleet → show, change, remove it). Clients and
stateful testers (schemathesis) follow them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from edgefleet.model import openapi_links as links

_FLEET = ("/api/v1/fleets/{fleet}", ("get", "patch", "delete"))
_DEVICE = ("/api/v1/devices/{device}", ("get", "patch", "delete"))

LINKS: tuple[links.Link, ...] = (
    # (method, path, status, JSON pointer into the reply, parameter, ((path, methods), ...))
    ("post", "/api/v1/fleets", "201", "/name", "fleet", (
        _FLEET, ("/api/v1/fleets/{fleet}/provisioning-keys", ("post",)),
        ("/api/v1/fleets/{fleet}/config", ("post",)),
        ("/api/v1/fleets/{fleet}/releases", ("get",)))),
    ("get", "/api/v1/fleets", "200", "/0/name", "fleet", (_FLEET,)),
    ("get", "/api/v1/devices", "200", "/0/uuid", "device", (
        _DEVICE, ("/api/v1/devices/{device}/diagnostics", ("get",)))),
    ("get", "/api/v1/fleets/{fleet}/releases", "200", "/0/commit", "commit", (
        ("/api/v1/releases/{commit}", ("get",)),)),
    ("post", "/api/v1/ssh-keys", "201", "/name", "name", (
        ("/api/v1/ssh-keys/{name}", ("delete",)),)),
)


def add_links(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with the links of LINKS whose operations both exist (in place)."""
    return links.add_links(doc, links=LINKS)


def install(app: FastAPI) -> None:
    """Serve the document with its links (built once, as FastAPI does)."""
    plain: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_links(plain())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
