"""Issue 15 from the command line: the README's example session against a real server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from edgefleet.cli import app
from tests.server.conftest import FleetInfo, Tenant, register
from tests.support.fleet_server import RunningServer


def runner_for(server: RunningServer, tmp_path: Path) -> Any:
    runner = CliRunner()

    def run(token: str, *args: str, code: int = 0) -> str:
        env = {"EDGEFLEET_CLIENT_CONFIG": str(tmp_path / "none.json"), "COLUMNS": "250",
               "EDGEFLEET_SERVER": server.url, "EDGEFLEET_TOKEN": token}
        r = runner.invoke(app, list(args), env=env)
        out = r.output + (r.stderr if r.stderr_bytes else "")
        assert r.exit_code == code, f"{args}: {out}"
        return out

    return run


def test_roles_and_support_session(server: RunningServer, tenant: Tenant,
                                   tmp_path: Path) -> None:
    run = runner_for(server, tmp_path)
    owner = tenant.token
    suffix = uuid.uuid4().hex[:6]
    org, fleet, carol, bob = f"acme-{suffix}", f"kiosks-{suffix}", f"carol{suffix}", f"bob{suffix}"
    carol_token = run(server.admin_token, "user", "create", carol, "--support").strip()
    bob_token = run(server.admin_token, "user", "create", bob).strip()
    run(owner, "org", "create", org)
    f = json.loads(run(owner, "fleet", "create", fleet, "--org", org, "--json"))
    assert f["organization"] == org
    key = tenant.http.post(f"/api/v1/fleets/{fleet}/provisioning-keys", json={}).json()["key"]
    device = register(server, FleetInfo(tenant, fleet, f["id"], f["uuid"], key))
    device.http.close()
    dev = device.uuid[:7]

    run(owner, "org", "invite", org, bob, "--role", "operator")
    assert bob in run(owner, "org", "members", org)
    assert "viewer" in run(owner, "org", "role", org, bob, "viewer")
    assert fleet in run(bob_token, "fleet", "list")
    assert "403" in run(bob_token, "fleet", "pin", fleet, "latest", code=1)

    # support: nothing before the grant, then exactly what is granted
    assert "404" in run(carol_token, "device", "show", dev, code=1)
    out = run(owner, "support", "grant", dev, "--for", "2h")
    assert "reboot not allowed" in out
    grant_id = out.split()[1].rstrip(":")
    assert dev in run(carol_token, "device", "list")
    run(carol_token, "logs", dev)
    assert "403" in run(carol_token, "env", "set", "DB_PASSWORD", "x", "--device", dev, code=1)
    run(carol_token, "device", "note", dev, "looked at the logs: disk full")
    assert "disk full" in run(owner, "device", "notes", dev)

    rows = json.loads(run(owner, "audit", "--device", dev, "--json"))
    actions = {(r["action"], r["outcome"], r["actor"]) for r in rows}
    assert ("support.grant", "ok", tenant.username) in actions
    assert ("device.note", "ok", carol) in actions
    assert ("variable.write", "denied", carol) in actions
    assert json.loads(run(owner, "audit", "--actor", carol, "--since", "1h", "--json"))

    run(owner, "support", "revoke", grant_id)
    assert "404" in run(carol_token, "device", "show", dev, code=1)
    assert "reboot allowed" in run(owner, "support", "grant", fleet, "--fleet", "--for", "2d",
                                   "--allow-reboot")
    assert "--for" in run(owner, "support", "grant", dev, "--for", "soon", code=2)

    # tokens: named, read-only, listed, revoked
    ro = run(owner, "token", "create", "ci", "--expires", "30d", "--read-only").strip()
    assert fleet in run(ro, "fleet", "list")
    assert "read-only" in run(ro, "fleet", "create", "x" + suffix, code=1)
    listed = json.loads(run(owner, "token", "list", "--json"))
    ci = next(t for t in listed if t["name"] == "ci")
    assert ci["scope"] == "read" and ci["expires_ms"]
    run(owner, "token", "revoke", str(ci["id"]))
    assert httpx.get(f"{server.url}/api/v1/whoami",
                     headers={"Authorization": f"Bearer {ro}"}).status_code == 401
