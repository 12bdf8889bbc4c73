"""Issue 15's migration: a database made by the previous release's migrations (up to
d16_dashboard), with users, fleets, devices, releases, variables, keys and remote sessions
in it, is upgraded; every user gets a personal organization owning their fleets, the remote
sessions join the one audit trail, and nothing is lost. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import edgefleet.server.db as dbmod
from edgefleet.server import keys
from edgefleet.server.db import Database, open_engine
from tests.support.fleet_server import PG_URL, pg_schema_url

PREVIOUS_HEAD = "d16_dashboard"
"""The previous release's last migration (issue 14's remote access, issue 16's dashboard)."""
TABLES = ("users", "fleets", "devices", "releases", "variables", "api_keys", "services")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory(prefix="efmig-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'server.sqlite'}"
        return
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("EDGEFLEET_TEST_PG_URL is not set")
        pytest.skip("EDGEFLEET_TEST_PG_URL is not set")
    with pg_schema_url(PG_URL) as u:
        yield u


def upgrade(engine: sa.Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(dbmod.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def seed(conn: sa.Connection) -> None:
    ex = conn.execute
    ex(sa.text("INSERT INTO users (id, username, is_admin, created_ms) VALUES "
               "(1, 'admin', true, 1), (2, 'alice', false, 2), (3, 'bob', false, 3)"))
    ex(sa.text("INSERT INTO fleets (id, uuid, name, owner_id, device_type, created_ms) VALUES "
               "(10, 'f10', 'shop', 2, 'generic-amd64', 1), "
               "(11, 'f11', 'lab', 2, 'generic-amd64', 1), "
               "(12, 'f12', 'shop', 3, 'generic-amd64', 1)"))
    ex(sa.text("INSERT INTO releases (id, fleet_id, \"commit\", status, composition, target, error,"
               " build_log, created_ms) VALUES (20, 10, 'c20', 'success', '{}', '{}', '', '', 1)"))
    ex(sa.text("INSERT INTO services (id, fleet_id, name) VALUES (30, 10, 'web')"))
    ex(sa.text(
        "INSERT INTO devices (id, uuid, fleet_id, name, device_type, pinned_release_id, status,"
        " os_version, os_variant, supervisor_version, mac_address, ip_address, reported,"
        " vpn_connected, created_ms) VALUES (40, 'd40', 10, 'till', 'generic-amd64', 20, 'Idle',"
        " '', '', '', '', '', '{}', false, 1), (41, 'd41', 12, 'till', 'generic-amd64', NULL,"
        " '', '', '', '', '', '', '{}', false, 1)"))
    ex(sa.text("INSERT INTO variables (kind, fleet_id, device_id, service, name, value) VALUES "
               "('env', 10, NULL, '', 'MODE', 'prod'), ('env', 10, 40, 'web', 'PSK', 's')"))
    ex(sa.text("INSERT INTO tunnel_sessions (user_id, username, device_uuid, kind, target, "
               "command, started_ms, ended_ms, bytes_up, bytes_down, result) VALUES "
               "(2, 'alice', 'd40', 'command', 'host', 'uptime', 100, 200, 5, 70, 'exit 0'), "
               "(2, 'alice', 'd40', 'tcp', '127.0.0.1:80', '', 300, NULL, 0, 0, '')"))
    for i, (kind, user, fleet, device) in enumerate(
            (("user", 2, None, None), ("user", 3, None, None),
             ("provisioning", None, 10, None), ("device", None, None, 40))):
        ex(sa.text("INSERT INTO api_keys (key_hash, kind, user_id, fleet_id, device_id, name, "
                   "created_ms) VALUES (:h, :k, :u, :f, :d, '', 1)"),
           {"h": keys.hash_key(f"key{i}"), "k": kind, "u": user, "f": fleet, "d": device})


def snapshot(conn: sa.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {table: sorted(tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}")))
            for table in TABLES}


def test_upgrade_moves_fleets_into_personal_organizations(url: str) -> None:
    engine = open_engine(url=url)
    try:
        upgrade(engine, PREVIOUS_HEAD)
        with engine.begin() as conn:
            seed(conn)
            before = snapshot(conn)
        upgrade(engine, "head")
        with engine.connect() as conn:
            after = snapshot(conn)
            orgs = {r.personal_of: (r.id, r.handle) for r in conn.execute(sa.text(
                "SELECT id, handle, personal_of FROM organizations"))}
            members = sorted(tuple(r) for r in conn.execute(sa.text(
                "SELECT organization_id, user_id, fleet_id, role FROM members")))
            fleet_orgs = dict(tuple(r) for r in conn.execute(sa.text(
                "SELECT id, organization_id FROM fleets")))
            sessions = [tuple(r) for r in conn.execute(sa.text(
                "SELECT ts_ms, actor, organization, action, fleet, device, target, outcome, "
                "detail FROM audit_events ORDER BY id"))]
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    # nothing lost: every old column of every row is still there, unchanged
    for table in TABLES:
        assert len(after[table]) == len(before[table]), table
        assert [r[:len(before[table][0])] for r in after[table]] == before[table], table
    assert {u: h for u, (_i, h) in orgs.items()} == {1: "admin", 2: "alice", 3: "bob"}
    assert members == sorted((orgs[u][0], u, None, "owner") for u in (1, 2, 3))
    assert fleet_orgs == {10: orgs[2][0], 11: orgs[2][0], 12: orgs[3][0]}
    # the remote sessions are in the one audit trail, every field kept
    assert "tunnel_sessions" not in tables
    assert [row[:8] for row in sessions] == [
        (100, "alice", "alice", "remote.command", "shop", "d40", "host", "ok"),
        (300, "alice", "alice", "remote.tcp", "shop", "d40", "127.0.0.1:80", "open")]
    assert json.loads(sessions[0][8]) == {"command": "uptime", "ended_ms": 200, "bytes_up": 5,
                                          "bytes_down": 70, "result": "exit 0"}
    # and the server opens it and serves alice her fleets, not bob's
    db = Database(url=url)
    try:
        from edgefleet.server import tables as t
        from edgefleet.server.access import user_fleet
        from edgefleet.server.keys import lookup

        with db.session() as s:
            alice = lookup(s, key="key0")
            assert isinstance(alice, keys.UserPrincipal)
            assert user_fleet(s, user=alice, name="shop").id == 10
            assert s.get(t.Device, 40) is not None
    finally:
        db.close()
