"""Client commands of issue 15: organizations and roles, support grants, device notes, the
audit trail, API tokens, support agents. Parse, call, render; the rules live on the server."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from edgefleet.cli import user_cmds
from edgefleet.cli.fleet_common import JSON_OPT, call, console, print_json

org_app = typer.Typer(help="Organizations, their members and roles.", no_args_is_help=True)
support_app = typer.Typer(help="Support access to a device or fleet, for a limited time.",
                          no_args_is_help=True)
token_app = typer.Typer(help="Your named API tokens (expiry, read-only scope).",
                        no_args_is_help=True)
user_app = typer.Typer(help="Users: create them and mark support agents (administrators),"
                            " set dashboard passwords.", no_args_is_help=True)
user_app.command("passwd")(user_cmds.passwd)
ROLE_HELP = "owner, developer, operator or viewer."
DURATION = re.compile(r"^(\d+)([smhd])$")


def seconds(text: str) -> int:
    """`90m`, `2h`, `1d`, `7d` in seconds (exit 2 with what to write otherwise)."""
    m = DURATION.match(text.strip())
    if not m:
        raise typer.BadParameter(f"{text!r}: write a number and a unit, e.g. 2h, 1d or 7d "
                                 "(s, m, h or d)", param_hint="--for/--expires/--since")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: list[dict[str, Any]], columns: list[str]) -> Table:
    out = Table(*[c.upper() for c in columns])
    for r in rows:
        out.add_row(*[when(r[c]) if c.endswith("_ms") else str(r[c] if r[c] is not None
                                                               else "") for c in columns])
    return out


def show(data: Any, as_json: bool, columns: list[str]) -> None:
    print_json(data) if as_json else console.print(table(data, columns))


@org_app.command("create")
def org_create(handle: str) -> None:
    """Create an organization; you become its owner."""
    call(lambda c: c.api("POST", "/api/v1/orgs", json={"handle": handle}))
    console.print(f"organization [bold]{handle}[/] created; you are its owner")


@org_app.command("list")
def org_list(as_json: bool = JSON_OPT) -> None:
    """The organizations you belong to, and your role in each."""
    show(call(lambda c: c.api("GET", "/api/v1/orgs")), as_json, ["handle", "role", "personal"])


@org_app.command("members")
def org_members(org: str, as_json: bool = JSON_OPT) -> None:
    """Members of an organization and their roles (organization-wide or per fleet)."""
    show(call(lambda c: c.api("GET", f"/api/v1/orgs/{org}/members")), as_json,
         ["username", "role", "fleet"])


def _set_member(org: str, username: str, role: str, fleet: str | None) -> None:
    body = {"username": username, "role": role, "fleet": fleet}
    call(lambda c: c.api("PUT", f"/api/v1/orgs/{org}/members", json=body))
    where = f" on fleet {fleet}" if fleet else ""
    console.print(f"{username} is {role} in {org}{where}")


@org_app.command("invite")
def org_invite(org: str, username: str,
               role: str = typer.Option("viewer", "--role", help=ROLE_HELP),
               fleet: str | None = typer.Option(None, "--fleet", help="Only on this fleet.")
               ) -> None:
    """Add a user to an organization (or to one of its fleets) with a role."""
    _set_member(org, username, role, fleet)


@org_app.command("role")
def org_role(org: str, username: str, role: str = typer.Argument(..., help=ROLE_HELP),
             fleet: str | None = typer.Option(None, "--fleet", help="Only on this fleet.")
             ) -> None:
    """Change a member's role (in the organization, or on one fleet)."""
    _set_member(org, username, role, fleet)


@org_app.command("remove")
def org_remove(org: str, username: str) -> None:
    """Remove a member (all their roles in the organization)."""
    call(lambda c: c.api("DELETE", f"/api/v1/orgs/{org}/members/{username}"))
    console.print(f"{username} removed from {org}")


@support_app.command("grant")
def support_grant(target: str = typer.Argument(..., help="A device (uuid, prefix, name) or "
                                                         "a fleet."),
                  duration: str = typer.Option(..., "--for", help="2h, 1d, 7d, ..."),
                  allow_reboot: bool = typer.Option(False, "--allow-reboot/--no-reboot",
                                                    help="May support reboot the device?"),
                  fleet: bool = typer.Option(False, "--fleet",
                                             help="TARGET is a fleet (default: a device, "
                                                  "then a fleet of that name)."),
                  as_json: bool = JSON_OPT) -> None:
    """Give support agents access (view, logs, diagnostics, ssh, tunnel, service restart)."""
    body: dict[str, Any] = {"duration_s": seconds(duration), "allow_reboot": allow_reboot}

    def go(c: Any) -> Any:
        if not fleet:
            try:
                return c.api("POST", "/api/v1/support/grants", json={**body, "device": target})
            except Exception as exc:
                if getattr(exc, "status", 0) != 404:
                    raise
        return c.api("POST", "/api/v1/support/grants", json={**body, "fleet": target})

    g = call(go)
    if as_json:
        print_json(g)
        return
    what = f"device {g['device']}" if g["device"] else f"fleet {g['fleet']}"
    console.print(f"grant {g['id']}: support may access {what} until {when(g['expires_ms'])} "
                  f"UTC (reboot {'allowed' if g['allow_reboot'] else 'not allowed'})")


@support_app.command("list")
def support_list(ended: bool = typer.Option(False, "--all", help="Also ended grants."),
                 as_json: bool = JSON_OPT) -> None:
    """Support grants you can see."""
    rows = call(lambda c: c.api("GET", "/api/v1/support/grants",
                                params={"all": str(ended).lower()}))
    show(rows, as_json, ["id", "organization", "fleet", "device", "allow_reboot",
                         "created_by", "expires_ms", "active"])


@support_app.command("revoke")
def support_revoke(grant_id: int) -> None:
    """End a grant now."""
    call(lambda c: c.api("DELETE", f"/api/v1/support/grants/{grant_id}"))
    console.print(f"grant {grant_id} revoked")


def device_note(device: str, text: str) -> None:
    """Add to a device's running log of what was done and found."""
    call(lambda c: c.api("POST", f"/api/v1/devices/{device}/notes", json={"text": text}))
    console.print("noted")


def device_notes(device: str, as_json: bool = JSON_OPT) -> None:
    """A device's notes, oldest first."""
    show(call(lambda c: c.api("GET", f"/api/v1/devices/{device}/notes")), as_json,
         ["ts_ms", "author", "text"])


def audit(device: str | None = typer.Option(None, "--device", "-d", help="Device uuid."),
          fleet: str | None = typer.Option(None, "--fleet", "-f", help="Fleet name."),
          actor: str | None = typer.Option(None, "--actor", "-a", help="Username."),
          since: str | None = typer.Option(None, "--since", help="e.g. 2h, 1d, 7d ago."),
          limit: int = typer.Option(200, "--limit"), as_json: bool = JSON_OPT) -> None:
    """The audit trail of the organizations you own, newest first."""
    params: dict[str, Any] = {"limit": limit}
    params.update({k: v for k, v in (("fleet", fleet), ("actor", actor)) if v})
    if since:
        params["since_ms"] = int(datetime.now(UTC).timestamp() * 1000) - seconds(since) * 1000

    def go(c: Any) -> Any:
        if device:
            params["device"] = c.api("GET", f"/api/v1/devices/{device}")["uuid"]
        return c.api("GET", "/api/v1/audit", params=params)

    show(call(go), as_json, ["ts_ms", "actor", "organization", "action", "fleet", "device",
                             "target", "outcome", "detail"])


@token_app.command("create")
def token_create(name: str, expires: str | None = typer.Option(
        None, "--expires", help="e.g. 30d (default: never)."),
        read_only: bool = typer.Option(False, "--read-only", help="Can only read.")) -> None:
    """A new token (printed once; only its hash is kept)."""
    body = {"name": name, "scope": "read" if read_only else "full",
            "expires_in_s": seconds(expires) if expires else None}
    typer.echo(call(lambda c: c.api("POST", "/api/v1/tokens", json=body))["key"])


@token_app.command("list")
def token_list(as_json: bool = JSON_OPT) -> None:
    """Your tokens (never their secrets)."""
    show(call(lambda c: c.api("GET", "/api/v1/tokens")), as_json,
         ["id", "name", "scope", "created_ms", "expires_ms"])


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token: it stops working at once."""
    call(lambda c: c.api("DELETE", f"/api/v1/tokens/{token_id}"))
    console.print(f"token {token_id} revoked")


@user_app.command("create")
def user_create(username: str, admin: bool = typer.Option(False, "--admin"),
                support: bool = typer.Option(False, "--support",
                                             help="A support agent.")) -> None:
    """Create a user; prints its first token (once)."""
    body = {"username": username, "is_admin": admin, "is_support": support}
    typer.echo(call(lambda c: c.api("POST", "/api/v1/users", json=body))["token"])


@user_app.command("support")
def user_support(username: str, off: bool = typer.Option(False, "--off",
                                                         help="No longer a support agent.")
                 ) -> None:
    """Mark a user as a support agent (or not, with --off)."""
    call(lambda c: c.api("PATCH", f"/api/v1/users/{username}", json={"is_support": not off}))
    console.print(f"{username} is {'no longer ' if off else ''}a support agent")


def register(app: typer.Typer, device_app: typer.Typer) -> None:
    app.add_typer(org_app, name="org")
    app.add_typer(support_app, name="support")
    app.add_typer(token_app, name="token")
    app.add_typer(user_app, name="user")
    app.command("audit")(audit)
    device_app.command("note")(device_note)
    device_app.command("notes")(device_notes)
