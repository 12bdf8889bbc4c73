"""The one table of who may do what: role -> named permissions.

Every user-API endpoint declares exactly one of these permissions (`authz.allow`); the
resource it names (an organization, fleet or device) is then looked up with that permission.
No route decides access on its own.
"""

from __future__ import annotations

from typing import Final

ROLES: Final = ("owner", "developer", "operator", "viewer")
"""Membership roles, most powerful first."""

ACCOUNT: Final = "account"
"""Any signed-in user, about themselves: who am I, device types, own organizations/tokens."""
ACCOUNT_WRITE: Final = "account.write"
"""Any signed-in user with a full token: make/revoke own tokens, create organizations."""
ADMIN: Final = "admin"
"""Server administrators only: create users, mark support agents."""

_VIEWER: Final = frozenset({
    "org.read", "fleet.read", "device.read", "device.logs", "diagnostics.read",
    "release.read", "variable.read", "support.read",
})
_OPERATOR: Final = _VIEWER | {
    "fleet.pin", "device.update", "device.note", "device.diagnose", "device.ssh",
    "device.tunnel", "service.restart", "device.action", "device.reboot",
}
_DEVELOPER: Final = _OPERATOR | {"release.push", "variable.write", "fleet.create",
                                 "fleet.provision"}
_OWNER: Final = _DEVELOPER | {"fleet.delete", "device.delete", "org.members",
                              "support.grant", "audit.read"}

ROLE_PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "owner": frozenset(_OWNER),
    "developer": frozenset(_DEVELOPER),
    "operator": frozenset(_OPERATOR),
    "viewer": _VIEWER,
}

SUPPORT_PERMISSIONS: Final = frozenset({
    "fleet.read", "device.read", "device.logs", "diagnostics.read", "device.diagnose",
    "device.ssh", "device.tunnel", "service.restart", "device.note", "support.read",
})
"""What a support agent may do where a live grant covers the device or fleet (seed 000 §1.2):
view, logs, diagnostics, ssh, tunnel, restart of a service; never variables, configuration
or pushes. `device.reboot` is added per grant (`--allow-reboot`)."""
GRANT_REBOOT: Final = "device.reboot"

ALL_PERMISSIONS: Final = frozenset(_OWNER | SUPPORT_PERMISSIONS | {ACCOUNT, ACCOUNT_WRITE,
                                                                   ADMIN, GRANT_REBOOT})

READ_ONLY: Final = frozenset({ACCOUNT, "org.read", "fleet.read", "device.read", "device.logs",
                              "diagnostics.read", "release.read", "variable.read",
                              "support.read", "audit.read"})
"""What a read-only token may use; everything else changes something."""

STOPPING_ACTIONS: Final = frozenset({"reboot", "shutdown", "purge", "stop-service",
                                     "restart-supervisor"})
"""Actions that stop something: they need an explicit confirmation (recorded in the audit
trail), and from a support agent a note saying why (seed 000 §3)."""


def role_allows(role: str | None, permission: str) -> bool:
    """Whether a member with `role` (None: not a member) holds `permission`."""
    return role is not None and permission in ROLE_PERMISSIONS.get(role, frozenset())


def support_allows(permission: str, *, allow_reboot: bool) -> bool:
    """Whether a support agent under a live grant holds `permission`."""
    return permission in SUPPORT_PERMISSIONS or (allow_reboot and permission == GRANT_REBOOT)


def action_permission(action: str) -> str:
    """The permission a remote action needs: reboot its own (a grant can allow it), restart of
    a service the support-visible one, other stopping actions `device.action`."""
    if action == "reboot":
        return GRANT_REBOOT
    if action in ("restart-service", "restart"):
        return "service.restart"
    return "device.action"


def action_refusal(action: str, *, confirmed: bool, note: str | None,
                   is_support: bool) -> str | None:
    """Why a remote action may not go ahead yet (None: it may): stopping actions need
    `confirmed`, and from a support agent also a note."""
    if action not in STOPPING_ACTIONS:
        return None
    if not confirmed:
        return (f"{action!r} stops something on the device: confirm it explicitly "
                "(--yes / \"confirm\": true)")
    if is_support and not (note and note.strip()):
        return f"a support agent's {action!r} needs a note explaining why (--note \"...\")"
    return None
