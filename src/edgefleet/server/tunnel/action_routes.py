"""Pieces of the remote-action routes that carry issue 15's rules: one route per action with
the action's own permission (`roles.action_permission`), and diagnostics without variables'
values or configuration for callers who may not read them (support agents)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from edgefleet.server import roles
from edgefleet.server import tables as t
from edgefleet.server.authz import Access, allow
from edgefleet.server.rights import Rights
from edgefleet.server.state import ServerState

HIDDEN = frozenset({"environment", "env", "config", "configuration", "labels", "target"})
"""Keys left out of diagnostics for a caller without `variable.read`: the services'
environments and labels, the device's configuration and the server's target (all values)."""


class ActionBody(BaseModel):
    service: str | None = Field(None, max_length=255)
    force: bool = False
    confirm: bool = Field(False, description="Explicitly confirmed (needed for actions that "
                                             "stop something; recorded in the audit trail).")
    note: str | None = Field(None, max_length=2000,
                             description="Why (a support agent's stopping actions need one).")


Handler = Callable[[str, str, Request, Any, Access], Awaitable[dict[str, Any] | Response]]


def action_endpoint(action: str, handler: Handler, state: ServerState
                    ) -> Callable[..., Awaitable[dict[str, Any] | Response]]:
    """The endpoint of one action, declaring that action's permission."""
    async def endpoint(device: str, request: Request, body: ActionBody | None = None,
                       a: Access = Depends(allow(state, roles.action_permission(action)))
                       ) -> dict[str, Any] | Response:
        return await handler(device, action, request, body, a)

    endpoint.__doc__ = (f"Run `{action}` on the device's supervisor through its tunnel "
                        f"({roles.action_permission(action)}).")
    return endpoint


def values_visible(s: Session, a: Access, device: t.Device) -> bool:
    """Whether the caller may read the device's variables (and so its configuration)."""
    fleet = s.get(t.Fleet, device.fleet_id)
    return fleet is not None and bool(
        Rights.load(s, a.user).check(fleet, device.id, "variable.read"))


def without_values(doc: Any) -> Any:
    """`doc` with every HIDDEN key removed, at any depth."""
    if isinstance(doc, dict):
        return {k: without_values(v) for k, v in doc.items() if k not in HIDDEN}
    if isinstance(doc, list):
        return [without_values(v) for v in doc]
    return doc
