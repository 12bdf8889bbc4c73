"""Rendering dashboard pages: one Jinja2 environment (autoescaped) and its filters."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from edgefleet.server.web.auth import WebUser

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def ago(ms: int | None) -> str:
    """`12s ago`, `3m ago`, `2h ago`, `5d ago`, or `never`."""
    if not ms:
        return "never"
    s = max(0, int(time.time() - ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


def when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short(commit: str | None) -> str:
    return (commit or "")[:7]


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                         autoescape=True, undefined=jinja2.StrictUndefined,
                         trim_blocks=True, lstrip_blocks=True)
ENV.filters.update(ago=ago, when=when, short=short)


def render(request: Request, name: str, *, user: WebUser | None, status: int = 200,
           **context: Any) -> HTMLResponse:
    """A template rendered with the user and their CSRF token (for forms and htmx)."""
    html = ENV.get_template(name).render(
        request=request, user=user.principal if user else None,
        csrf=user.csrf if user else "", **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
