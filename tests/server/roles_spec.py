"""Issue 15's rules written down independently of the code: what each role and a support
agent may do, and every user-API endpoint with the one permission it needs. The permission
matrix test derives its expected answers from these tables only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

READ = {"org.read", "fleet.read", "device.read", "device.logs", "diagnostics.read",
        "release.read", "variable.read", "support.read"}
"""viewer: read only, including logs and stored diagnostics."""
OPERATE = {"fleet.pin", "device.update", "device.note", "device.diagnose", "device.ssh",
           "device.tunnel", "service.restart", "device.action", "device.reboot"}
"""operator: actions, ssh, diagnostics, pins; no pushes, no variables."""
DEVELOP = {"release.push", "variable.write", "fleet.create", "fleet.provision"}
"""developer: also push releases, variables and configuration."""
OWN = {"fleet.delete", "device.delete", "org.members", "support.grant", "audit.read"}
"""owner: everything, including members and grants."""

SPEC_ROLES: dict[str, set[str]] = {
    "viewer": READ,
    "operator": READ | OPERATE,
    "developer": READ | OPERATE | DEVELOP,
    "owner": READ | OPERATE | DEVELOP | OWN,
}
SPEC_SUPPORT = {"fleet.read", "device.read", "device.logs", "diagnostics.read",
                "device.diagnose", "device.ssh", "device.tunnel", "service.restart",
                "device.note", "support.read"}
"""seed 000 §1.2: view, logs, diagnostics, ssh, tunnel, restart of a service."""


ACTION_PERMISSIONS = {
    "restart": "service.restart", "restart-service": "service.restart",
    "start-service": "device.action", "stop-service": "device.action",
    "reboot": "device.reboot", "shutdown": "device.action", "purge": "device.action",
    "identify": "device.action",
}
"""Remote actions: restarting services is what support may do (§1.2), reboot is granted per
grant, everything else that acts on the device is an operator's."""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    """Route path; `{F}` `{D}` `{C}` `{ORG}` `{T}` are filled per actor."""
    permission: str
    kind: str
    """What the request names: `fleet`, `device`, `org`, `account` (only the caller),
    `list` (a filtered listing) or `admin`."""
    json: Any = None
    params: dict[str, str] | None = None
    ok: frozenset[int] = frozenset()
    """Non-2xx answers that still mean "allowed" (the request got past the permission)."""
    route: str = ""
    """The app's route path when it differs from `path`."""


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/v1/whoami", "account", "account"),
    Endpoint("GET", "/api/v1/device-types", "account", "account"),
    Endpoint("POST", "/api/v1/tokens", "account.write", "account", json={"name": "m"}),
    Endpoint("GET", "/api/v1/tokens", "account", "account"),
    Endpoint("DELETE", "/api/v1/tokens/999999999", "account.write", "account",
             ok=frozenset({404}), route="/api/v1/tokens/{token_id}"),
    Endpoint("POST", "/api/v1/users", "admin", "admin", json={"username": "never-made"}),
    Endpoint("PATCH", "/api/v1/users/nobody", "admin", "admin", json={"is_support": True},
             route="/api/v1/users/{username}"),
    Endpoint("GET", "/api/v1/orgs", "account", "list"),
    Endpoint("POST", "/api/v1/orgs", "account.write", "account", json={"handle": "{NEW}"}),
    Endpoint("GET", "/api/v1/orgs/{ORG}/members", "org.read", "org",
             route="/api/v1/orgs/{org}/members"),
    Endpoint("PUT", "/api/v1/orgs/{ORG}/members", "org.members", "org",
             json={"username": "{BYSTANDER}", "role": "viewer"},
             route="/api/v1/orgs/{org}/members"),
    Endpoint("DELETE", "/api/v1/orgs/{ORG}/members/{BYSTANDER}", "org.members", "org",
             ok=frozenset({404}), route="/api/v1/orgs/{org}/members/{username}"),
    Endpoint("GET", "/api/v1/fleets", "fleet.read", "list"),
    Endpoint("POST", "/api/v1/fleets", "fleet.create", "org",
             json={"name": "{NEW}", "device_type": "generic-amd64", "organization": "{ORG}"}),
    Endpoint("GET", "/api/v1/fleets/{F}", "fleet.read", "fleet", route="/api/v1/fleets/{fleet}"),
    Endpoint("PATCH", "/api/v1/fleets/{F}", "fleet.pin", "fleet",
             json={"target_release": "latest"}, route="/api/v1/fleets/{fleet}"),
    Endpoint("DELETE", "/api/v1/fleets/{FRESH_F}", "fleet.delete", "fleet",
             route="/api/v1/fleets/{fleet}"),
    Endpoint("POST", "/api/v1/fleets/{F}/provisioning-keys", "fleet.provision", "fleet",
             json={}, route="/api/v1/fleets/{fleet}/provisioning-keys"),
    Endpoint("POST", "/api/v1/fleets/{F}/config", "fleet.provision", "fleet", json={},
             route="/api/v1/fleets/{fleet}/config"),
    Endpoint("GET", "/api/v1/fleets/{F}/releases", "release.read", "fleet",
             route="/api/v1/fleets/{fleet}/releases"),
    Endpoint("POST", "/api/v1/fleets/{F}/releases", "release.push", "fleet",
             ok=frozenset({400, 409}), route="/api/v1/fleets/{fleet}/releases"),
    Endpoint("GET", "/api/v1/releases/{C}", "release.read", "fleet",
             route="/api/v1/releases/{commit}"),
    Endpoint("GET", "/api/v1/devices", "device.read", "fleet", params={"fleet": "{F}"}),
    Endpoint("GET", "/api/v1/devices/{D}", "device.read", "device",
             route="/api/v1/devices/{device}"),
    Endpoint("PATCH", "/api/v1/devices/{D}", "device.update", "device",
             json={"name": "renamed"}, route="/api/v1/devices/{device}"),
    Endpoint("DELETE", "/api/v1/devices/{FRESH_D}", "device.delete", "device",
             route="/api/v1/devices/{device}"),
    Endpoint("GET", "/api/v1/variables", "variable.read", "fleet", params={"fleet": "{F}"}),
    Endpoint("PUT", "/api/v1/variables", "variable.write", "device",
             json={"device": "{D}", "name": "API_TOKEN", "value": "{SECRET}"}),
    Endpoint("DELETE", "/api/v1/variables", "variable.write", "fleet",
             params={"fleet": "{F}", "name": "NOT_SET"}, ok=frozenset({404})),
    Endpoint("GET", "/device/v2/{D}/logs", "device.logs", "device",
             route="/device/v2/{uuid}/logs"),
    Endpoint("POST", "/api/v1/devices/{D}/notes", "device.note", "device",
             json={"text": "checked the fan"}, route="/api/v1/devices/{device}/notes"),
    Endpoint("GET", "/api/v1/devices/{D}/notes", "device.read", "device",
             route="/api/v1/devices/{device}/notes"),
    Endpoint("POST", "/api/v1/support/grants", "support.grant", "device",
             json={"device": "{D}", "duration_s": 3600}),
    Endpoint("GET", "/api/v1/support/grants", "support.read", "list"),
    Endpoint("DELETE", "/api/v1/support/grants/{G}", "support.grant", "fleet",
             route="/api/v1/support/grants/{grant_id}"),
    Endpoint("GET", "/api/v1/audit", "audit.read", "list"),
    # the balena API (issue 17): reads show the caller's organizations' rows; writes check
    # the resource's permission (balena/write.py WRITE_PERMISSIONS) on the fleet touched
    Endpoint("GET", "/actor/v1/whoami", "account", "account"),
    Endpoint("GET", "/v7/application", "fleet.read", "list", route="/v7/{path:path}"),
    *(Endpoint(m, "/v7/no_such_resource", "account.write", "account",
               ok=frozenset({404, 405}), route="/v7/{path:path}")
      for m in ("POST", "PATCH", "PUT", "DELETE")),
    Endpoint("POST", "/v3/build", "release.push", "fleet", params={"slug": "{ORG}/{F}"},
             ok=frozenset({400})),
    Endpoint("POST", "/api-key/v2/", "fleet.provision", "fleet",
             json={"actorType": "application", "actorTypeId": "{FID}",
                   "roles": ["provisioning-api-key"]}),
    Endpoint("GET", "/auth/v1/token", "account", "account"),
    Endpoint("GET", "/device-types/v1", "account", "account"),
    Endpoint("POST", "/download-config", "fleet.provision", "fleet", json={"appId": "{FID}"}),
    Endpoint("GET", "/api/v3/delta-stats", "admin", "admin"),
    # remote access (issue 14): SSH keys are the caller's own; actions and diagnostics reach
    # the device (which has no supervisor API key reported here: 409 past the permission)
    Endpoint("POST", "/api/v1/ssh-keys", "account.write", "account",
             json={"name": "k", "public_key": "not a key"}, ok=frozenset({400, 422})),
    Endpoint("GET", "/api/v1/ssh-keys", "account", "account"),
    Endpoint("DELETE", "/api/v1/ssh-keys/nothing", "account.write", "account",
             ok=frozenset({404}), route="/api/v1/ssh-keys/{name}"),
    *(Endpoint("POST", f"/api/v1/devices/{{D}}/actions/{action}", permission, "device",
               json={"service": "main"}, ok=frozenset({409, 428}),
               route=f"/api/v1/devices/{{device}}/actions/{action}")
      for action, permission in ACTION_PERMISSIONS.items()),
    Endpoint("POST", "/api/v1/devices/{D}/diagnose", "device.diagnose", "device",
             ok=frozenset({409}), route="/api/v1/devices/{device}/diagnose"),
    Endpoint("GET", "/api/v1/devices/{D}/diagnostics", "diagnostics.read", "device",
             route="/api/v1/devices/{device}/diagnostics"),
]

ACTORS = ("owner", "developer", "operator", "viewer", "support", "support-no-grant",
          "support-expired", "outsider", "revoked", "read-token")


def expected(actor: str, ep: Endpoint) -> str:
    """`ok`, or the status code the actor must get, from the tables above only."""
    if actor == "revoked":
        return "401"
    if ep.kind == "admin":
        return "403"
    if actor == "read-token":
        writes = ep.permission not in READ | {"account", "audit.read"}
        return "403" if writes else "ok"
    if ep.kind in ("account", "list"):
        return "ok"
    if actor in SPEC_ROLES:
        return "ok" if ep.permission in SPEC_ROLES[actor] else "403"
    if actor == "support" and ep.kind in ("fleet", "device"):
        return "ok" if ep.permission in SPEC_SUPPORT else "403"
    return "404"
    """outsiders, support without (or with an expired) grant: the resource is not there."""
