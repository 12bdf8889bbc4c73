"""OpenAPI `links` in the supervisor API's document: `/v2/state/status` names the apps and
services that the app and service operations take (clients and schemathesis's stateful phase
follow them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from edgefleet.model import openapi_links as links

_BY_APP: links.Targets = (
    ("/v1/apps/{appId}", ("get",)), ("/v1/apps/{appId}/stop", ("post",)),
    ("/v1/apps/{appId}/start", ("post",)), ("/v2/applications/{appId}/state", ("get",)),
    ("/v2/applications/{appId}/restart-service", ("post",)),
    ("/v2/applications/{appId}/stop-service", ("post",)),
    ("/v2/applications/{appId}/start-service", ("post",)),
    ("/v2/applications/{appId}/restart", ("post",)),
    ("/v2/applications/{appId}/purge", ("post",)))

LINKS: tuple[links.Link, ...] = (
    ("get", "/v2/state/status", "200", "/containers/0/appId", "appId", _BY_APP),
    ("get", "/v2/state/status", "200", "/containers/0/serviceName", "serviceName", (
        ("/v2/containerId", ("get",)),)),
)


def install(app: FastAPI) -> None:
    """Serve the document with its links (built once, as FastAPI does)."""
    plain: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = links.add_links(plain(), links=LINKS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
