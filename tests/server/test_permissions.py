"""Issue 15: the permission matrix. Every user-API endpoint is called by every kind of
caller against a real server (SQLite and PostgreSQL); the expected answer comes from
`roles_spec` (the issue's rules), never from the server's own role table."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import HTTPException
from fastapi.routing import APIRoute

from edgefleet.server import action_rules, guard, keys, roles
from edgefleet.server import org_tables as o
from edgefleet.server import tables as t
from edgefleet.server.app import create_app
from edgefleet.server.settings import ServerSettings
from tests.server import roles_spec as spec
from tests.server.conftest import FleetInfo, Tenant, new_fleet, new_tenant, register
from tests.support.fleet_server import RunningServer

SECRET = "hunter2-" + uuid.uuid4().hex
DEVICE_API = {("POST", "/device/register"), ("GET", "/device/v3/{uuid}/state"),
              ("PATCH", "/device/v3/state"), ("POST", "/device/v2/{uuid}/log-stream"),
              ("PATCH", "/device/v3/{uuid}"), ("GET", "/ping"), ("GET", "/config/vars"),
              ("GET", "/api/v3/delta"), ("GET", "/api/v3/delta/{key}"),
              ("GET", "/ui"), ("GET", "/ui/static/{name}")}
"""Routes for devices' own keys, or public (no key): no user permission. The dashboard's
pages (a mounted app under /ui) ask `web/permissions.allowed`, which reads the role table."""


@dataclass
class Target:
    fleet: FleetInfo
    device: str
    commit: str


@dataclass
class World:
    server: RunningServer
    org: str
    owner: Tenant
    bystander: str
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)

    def grant(self, fleet: str, *, end: str | None = None) -> int:
        r = self.owner.http.post("/api/v1/support/grants",
                                 json={"fleet": fleet, "duration_s": 3600})
        assert r.status_code == 201, r.text
        gid = int(r.json()["id"])
        if end == "revoked":
            assert self.owner.http.delete(f"/api/v1/support/grants/{gid}").status_code == 204
        elif end == "expired":
            with self.server.db.session() as s:
                s.execute(sa.update(o.SupportGrant).where(o.SupportGrant.id == gid)
                          .values(expires_ms=1))
        return gid


def org_fleet(w: World) -> FleetInfo:
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    r = w.owner.http.post("/api/v1/fleets", json={"name": name, "device_type": "generic-amd64",
                                                  "organization": w.org})
    assert r.status_code == 201, r.text
    k = w.owner.http.post(f"/api/v1/fleets/{name}/provisioning-keys", json={})
    return FleetInfo(tenant=w.owner, name=name, id=r.json()["id"], uuid=r.json()["uuid"],
                     provisioning_key=k.json()["key"])


def target(w: World, *, grant: str | None) -> Target:
    fleet = org_fleet(w)
    device = register(w.server, fleet)
    device.http.close()
    commit = uuid.uuid4().hex
    with w.server.db.session() as s:
        s.add(t.Release(fleet_id=fleet.id, commit=commit, status="success",
                        created_ms=1, finished_ms=1))
    if grant is not None:
        w.grant(fleet.name, end=None if grant == "live" else grant)
    return Target(fleet=fleet, device=device.uuid, commit=commit)


def support_agent(w: World) -> httpx.Client:
    with w.server.client(w.server.admin_token) as admin:
        r = admin.post("/api/v1/users", json={"username": f"s{uuid.uuid4().hex[:10]}",
                                              "is_support": True})
        assert r.status_code == 201, r.text
        return w.server.client(r.json()["token"])


@pytest.fixture(scope="module")
def world(server: RunningServer) -> Iterator[World]:
    owner = new_tenant(server)
    org = f"acme-{uuid.uuid4().hex[:8]}"
    assert owner.http.post("/api/v1/orgs", json={"handle": org}).status_code == 201
    w = World(server=server, org=org, owner=owner, bystander=new_tenant(server).username)
    w.clients["owner"] = owner.http
    for role in ("developer", "operator", "viewer"):
        member = new_tenant(server)
        r = owner.http.put(f"/api/v1/orgs/{org}/members",
                           json={"username": member.username, "role": role})
        assert r.status_code == 200, r.text
        w.clients[role] = member.http
    w.clients["outsider"] = new_tenant(server).http
    for name in ("revoked", "read-token"):
        r = owner.http.post("/api/v1/tokens", json={
            "name": name, "scope": "read" if name == "read-token" else "full"})
        w.clients[name] = server.client(r.json()["key"])
    ids = {k["name"]: k["id"] for k in owner.http.get("/api/v1/tokens").json()}
    assert owner.http.delete(f"/api/v1/tokens/{ids['revoked']}").status_code == 204
    main = target(w, grant=None)
    for actor in spec.ACTORS:
        w.targets[actor] = main
    for actor, grant in (("support", "live"), ("support-no-grant", None),
                         ("support-expired", "expired")):
        w.clients[actor] = support_agent(w)
        w.targets[actor] = target(w, grant=grant)
    yield w
    for c in w.clients.values():
        c.close()


def fill(w: World, actor: str, text: str) -> str:
    tg = w.targets[actor]
    text = text.replace('"{FID}"', str(tg.fleet.id))
    values = {"{F}": tg.fleet.name, "{D}": tg.device, "{C}": tg.commit, "{ORG}": w.org,
              "{BYSTANDER}": w.bystander, "{SECRET}": SECRET,
              "{NEW}": f"n{uuid.uuid4().hex[:10]}"}
    if "{FRESH_F}" in text:
        grant = {"support": "live", "support-expired": "expired"}.get(actor)
        values["{FRESH_F}"] = target(w, grant=grant).fleet.name
    if "{FRESH_D}" in text:
        d = register(w.server, tg.fleet)
        d.http.close()
        values["{FRESH_D}"] = d.uuid
    if "{G}" in text:
        end = {"support": None, "support-expired": "expired"}.get(actor, "revoked")
        end = None if actor in spec.SPEC_ROLES or actor in ("outsider", "revoked",
                                                             "read-token") else end
        values["{G}"] = str(w.grant(org_fleet(w).name if actor != "support" else
                                    target(w, grant=None).fleet.name, end=end))
    for k, v in values.items():
        text = text.replace(k, v)
    return text


def call(w: World, actor: str, ep: spec.Endpoint) -> int:
    body = json.loads(fill(w, actor, json.dumps(ep.json))) if ep.json is not None else None
    params = {k: fill(w, actor, v) for k, v in (ep.params or {}).items()}
    r = w.clients[actor].request(ep.method, fill(w, actor, ep.path), json=body, params=params)
    return r.status_code


def verdict(status: int, ep: spec.Endpoint) -> str:
    return "ok" if status < 400 or status in ep.ok else str(status)


def test_permission_matrix(world: World) -> None:
    """Every endpoint x {owner, developer, operator, viewer, support agent with a grant,
    without one, with an expired one, another organization's member, a revoked token, a
    read-only token}: the answer the issue's rules give."""
    wrong = []
    for ep in spec.ENDPOINTS:
        for actor in spec.ACTORS:
            status = call(world, actor, ep)
            want = spec.expected(actor, ep)
            got = str(status) if str(status) == want else verdict(status, ep)
            if got != want:
                wrong.append(f"{ep.method} {ep.path} as {actor}: got {got}, want {want}")
    assert not wrong, "\n".join(wrong)


def test_audit_records_and_secrets(world: World) -> None:
    """The matrix's changes are in the audit trail, denials too; the secret variable value
    set by the developer never appears in it."""
    rows = world.owner.http.get("/api/v1/audit", params={"limit": 5000}).json()
    actions = {(r["action"], r["outcome"]) for r in rows}
    for needed in (("variable.set", "ok"), ("variable.write", "denied"), ("fleet.pin", "ok"),
                   ("support.grant", "ok"), ("support.revoke", "ok"), ("member.invite", "ok"),
                   ("device.note", "ok"), ("device.delete", "ok"), ("fleet.delete", "ok"),
                   ("release.push", "ok"), ("device.update", "ok")):
        assert needed in actions, needed
    assert SECRET not in json.dumps(rows)
    sets = [r for r in rows if r["action"] == "variable.set"]
    assert all("[REDACTED]" in r["detail"] for r in sets)
    assert all(r["actor"] and r["organization"] == world.org for r in sets)
    support = [r for r in rows if r["action"] == "variable.write" and r["outcome"] == "denied"]
    assert any(r["device"] == world.targets["support"].device for r in support)
    # filters: by device, by actor, by time
    dev = world.targets["owner"].device
    by_dev = world.owner.http.get("/api/v1/audit", params={"device": dev}).json()
    assert by_dev and all(r["device"] == dev for r in by_dev)
    newest = rows[0]["ts_ms"]
    later = world.owner.http.get("/api/v1/audit", params={"since_ms": newest + 1}).json()
    assert all(r["ts_ms"] > newest for r in later)
    viewer_view = world.clients["viewer"].get("/api/v1/audit").json()
    assert all(r["organization"] != world.org for r in viewer_view)


def test_support_agent_reads_logs_but_cannot_write_variables(world: World) -> None:
    """Before expiry: the agent's variable write is refused (403), its log read works; the
    grant revoked, the same read is refused."""
    agent = world.clients["support"]
    tg = world.targets["support"]
    r = agent.put("/api/v1/variables", json={"device": tg.device, "name": "X", "value": "1"})
    assert r.status_code == 403, r.text
    assert agent.get(f"/device/v2/{tg.device}/logs").status_code == 200
    assert agent.get("/api/v1/variables", params={"fleet": tg.fleet.name}).status_code == 403
    live = [g for g in agent.get("/api/v1/support/grants").json()
            if g["fleet"] == tg.fleet.name]
    assert live and live[0]["allow_reboot"] is False
    # a grant on one device: the agent sees that grant and device, not the fleet's others
    one = target(world, grant=None)
    other = register(world.server, one.fleet)
    other.http.close()
    r = world.owner.http.post("/api/v1/support/grants",
                              json={"device": one.device, "duration_s": 600})
    assert r.status_code == 201, r.text
    assert r.json()["id"] in [g["id"] for g in agent.get("/api/v1/support/grants").json()]
    assert agent.get(f"/api/v1/devices/{one.device}").status_code == 200
    assert agent.get(f"/api/v1/devices/{other.uuid}").status_code == 404
    listed = {d["uuid"] for d in agent.get("/api/v1/devices").json()}
    assert one.device in listed and other.uuid not in listed and tg.device in listed
    assert world.targets["support-no-grant"].device not in listed
    assert agent.get(f"/api/v1/fleets/{one.fleet.name}").status_code == 404
    fresh = target(world, grant="live")
    assert agent.get(f"/device/v2/{fresh.device}/logs").status_code == 200
    gid = next(g["id"] for g in world.owner.http.get("/api/v1/support/grants").json()
           if g["fleet"] == fresh.fleet.name)
    assert world.owner.http.delete(f"/api/v1/support/grants/{gid}").status_code == 204
    assert agent.get(f"/device/v2/{fresh.device}/logs").status_code == 404


def test_expired_token_refused(server: RunningServer) -> None:
    """A token past its expiry gets 401 even while cached."""
    tenant = new_tenant(server)
    r = tenant.http.post("/api/v1/tokens", json={"name": "short", "expires_in_s": 60})
    token = r.json()["key"]
    with server.client(token) as c:
        assert c.get("/api/v1/whoami").status_code == 200
        with server.db.session() as s:
            s.execute(sa.update(t.ApiKey).where(t.ApiKey.name == "short",
                                                t.ApiKey.user_id.isnot(None))
                      .values(expires_ms=1))
        server.state.key_cache.clear()
        assert c.get("/api/v1/whoami").status_code == 401
    new_fleet(tenant)  # the first token still works
    tenant.http.close()


def _permissions(route: APIRoute) -> list[str]:
    found: list[str] = []
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        perm = getattr(dep.call, "permission", None)
        if perm is not None:
            found.append(str(perm))
        stack.extend(dep.dependencies)
    return found


def test_every_route_declares_one_permission() -> None:
    """A route without exactly one permission (or one the matrix does not cover) fails."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(settings=ServerSettings(data_dir=Path(tmp)))
        routes = [r for r in app.routes if isinstance(r, APIRoute)]
        app.state.server.db.close()
    covered = {(e.method, e.route or e.path): e.permission for e in spec.ENDPOINTS}
    problems: list[str] = []
    for route in routes:
        for method in route.methods or ():
            key = (method, route.path)
            if key in DEVICE_API:
                continue
            perms = _permissions(route)
            if len(perms) != 1:
                problems.append(f"{method} {route.path}: permissions {perms}")
            elif covered.get(key) != perms[0]:
                problems.append(f"{method} {route.path}: {perms[0]} not in the matrix "
                                f"(tests/server/roles_spec.py) as {covered.get(key)}")
    assert not problems, "\n".join(problems)


def test_role_table_matches_the_issue() -> None:
    """The server's one role table says what the issue says."""
    assert {k: set(v) for k, v in roles.ROLE_PERMISSIONS.items()} == spec.SPEC_ROLES
    assert set(roles.SUPPORT_PERMISSIONS) == spec.SPEC_SUPPORT




def test_fleet_role_is_finer_than_the_organization_role(world: World) -> None:
    """A viewer of the organization who is developer on one fleet changes variables there
    only; a member of one fleet alone sees that fleet only."""
    server, org = world.server, world.org
    other = org_fleet(world)
    viewer, solo = new_tenant(server), new_tenant(server)
    put = world.owner.http.put
    assert put(f"/api/v1/orgs/{org}/members",
               json={"username": viewer.username, "role": "viewer"}).status_code == 200
    for user in (viewer, solo):
        r = put(f"/api/v1/orgs/{org}/members", json={"username": user.username,
                                                      "role": "developer", "fleet": other.name})
        assert r.status_code == 200, r.text
    main = world.targets["owner"].fleet.name
    body = {"fleet": other.name, "name": "MODE", "value": "x"}
    assert viewer.http.put("/api/v1/variables", json=body).status_code == 200
    assert viewer.http.put("/api/v1/variables", json={**body, "fleet": main}).status_code == 403
    assert solo.http.put("/api/v1/variables", json=body).status_code == 200
    assert solo.http.get(f"/api/v1/fleets/{main}").status_code == 404
    assert [f["name"] for f in solo.http.get("/api/v1/fleets").json()] == [other.name]
    r = world.owner.http.delete(f"/api/v1/orgs/{org}/members/{solo.username}")
    assert r.status_code == 204
    assert solo.http.get(f"/api/v1/fleets/{other.name}").status_code == 404
    for user in (viewer, solo):
        user.http.close()


def test_account_changes_are_audited(world: World) -> None:
    """Sign-ins, token creation and revocation, membership and role changes are recorded."""
    owner = world.owner
    owner.http.get("/api/v1/whoami")
    member = new_tenant(world.server)
    put = owner.http.put
    put(f"/api/v1/orgs/{world.org}/members", json={"username": member.username,
                                                   "role": "viewer"})
    put(f"/api/v1/orgs/{world.org}/members", json={"username": member.username,
                                                   "role": "operator"})
    owner.http.delete(f"/api/v1/orgs/{world.org}/members/{member.username}")
    member.http.close()
    rows = owner.http.get("/api/v1/audit", params={"actor": owner.username}).json()
    got = {(r["action"], r["target"]) for r in rows}
    for needed in (("sign-in", owner.username), ("token.create", "revoked"),
                   ("token.revoke", "revoked"), ("member.invite", member.username),
                   ("member.role", member.username), ("member.remove", member.username)):
        assert needed in got, needed
    assert all(r["actor"] == owner.username and r["ts_ms"] and r["outcome"] for r in rows)


def test_the_last_owner_stays(world: World) -> None:
    r = world.owner.http.put(f"/api/v1/orgs/{world.org}/members",
                             json={"username": world.owner.username, "role": "viewer"})
    assert r.status_code == 400 and "no owner" in r.text


def test_guard_ends_sessions_when_the_grant_ends(world: World) -> None:
    """The watcher that guards open sessions returns once the grant is revoked."""
    fresh = target(world, grant="live")
    agent = world.clients["support"]
    token = agent.headers["authorization"].split()[1]
    with world.server.db.session() as s:
        user = keys.lookup(s, key=token)
        device = s.execute(sa.select(t.Device).where(t.Device.uuid == fresh.device)).scalar_one()
    assert isinstance(user, keys.UserPrincipal)
    perms = ("device.ssh", "device.tunnel")
    assert guard.holds(world.server.db, user=user, device_id=device.id, permissions=perms)
    assert not guard.holds(world.server.db, user=user, device_id=device.id,
                           permissions=("variable.write",))
    gid = next(g["id"] for g in world.owner.http.get("/api/v1/support/grants").json()
               if g["fleet"] == fresh.fleet.name)

    async def session() -> str:
        watcher = asyncio.create_task(guard.until_revoked(
            world.server.db, user=user, device_id=device.id, permissions=perms, every_s=0.2))
        await asyncio.sleep(0.5)
        assert not watcher.done()
        await asyncio.to_thread(world.owner.http.delete, f"/api/v1/support/grants/{gid}")
        return await asyncio.wait_for(watcher, timeout=5)

    assert "ended" in asyncio.run(session())


def test_reported_secrets_are_not_shown(world: World) -> None:
    """A secret-named field a device reports (its supervisor API key, for remote actions)
    reaches no user: not the viewer, not the support agent, not the owner."""
    fleet = org_fleet(world)
    world.grant(fleet.name)
    device = register(world.server, fleet)
    secret = uuid.uuid4().hex
    r = device.http.patch("/device/v3/state", json={device.uuid: {
        "api_secret": secret, "api_port": 48484, "cpu_usage": 3}})
    device.http.close()
    assert r.status_code == 200, r.text
    for actor in ("owner", "viewer", "support"):
        shown = world.clients[actor].get(f"/api/v1/devices/{device.uuid}")
        assert shown.status_code == 200, (actor, shown.text)
        assert secret not in shown.text and shown.json()["reported"]["cpu_usage"] == 3


def test_action_terms(world: World) -> None:
    """Reboot: an operator needs a confirmation; a support agent also a note, and a grant
    allowing reboots; every refusal is in the audit trail."""
    fresh = target(world, grant=None)
    db = world.server.db

    def principal(actor: str) -> keys.UserPrincipal:
        token = world.clients[actor].headers["authorization"].split()[1]
        with db.session() as s:
            user = keys.lookup(s, key=token)
        assert isinstance(user, keys.UserPrincipal)
        return user

    def decide(actor: str, action: str, *, confirmed: bool, note: str | None = None) -> int:
        with db.session() as s:
            device = s.execute(sa.select(t.Device).where(t.Device.uuid == fresh.device)
                               ).scalar_one()
            try:
                action_rules.authorize(db, s, user=principal(actor), device=device,
                                       action=action, confirmed=confirmed, note=note)
            except HTTPException as exc:
                return exc.status_code
        return 200

    assert decide("viewer", "reboot", confirmed=True) == 403
    assert decide("operator", "reboot", confirmed=False) == 428
    assert decide("operator", "reboot", confirmed=True) == 200
    assert decide("operator", "identify", confirmed=False) == 200
    assert decide("support", "reboot", confirmed=True, note="why") == 404  # no grant here
    world.grant(fresh.fleet.name)
    assert decide("support", "reboot", confirmed=True, note="why") == 403  # --no-reboot
    assert decide("support", "restart-service", confirmed=False) == 200
    assert decide("support", "stop-service", confirmed=True, note="why") == 403
    r = world.owner.http.post("/api/v1/support/grants", json={
        "fleet": fresh.fleet.name, "duration_s": 600, "allow_reboot": True})
    assert r.status_code == 201
    assert decide("support", "reboot", confirmed=True) == 428
    assert decide("support", "reboot", confirmed=True, note="disk full, owner agreed") == 200
    rows = world.owner.http.get("/api/v1/audit", params={"device": fresh.device}).json()
    denied = [r for r in rows if r["action"] == "action.reboot" and r["outcome"] == "denied"]
    assert len(denied) == 4


def test_action_endpoint_takes_the_confirmation_and_note(world: World) -> None:
    """Over HTTP: an unconfirmed reboot is 428; confirmed it gets past the terms (409 here:
    this device never reported a supervisor API key); a support agent also needs a note."""
    fresh = target(world, grant=None)
    r = world.owner.http.post("/api/v1/support/grants", json={
        "fleet": fresh.fleet.name, "duration_s": 600, "allow_reboot": True})
    assert r.status_code == 201

    def reboot(actor: str, **body: object) -> int:
        url = f"/api/v1/devices/{fresh.device}/actions/reboot"
        return world.clients[actor].post(url, json=body).status_code

    assert reboot("operator") == 428
    assert reboot("operator", confirm=True) == 409
    assert reboot("support", confirm=True) == 428
    assert reboot("support", confirm=True, note="hung since 09:00, owner agreed") == 409
