"""Several API processes on one PostgreSQL: a change made through one reaches devices
polling another within the cache refresh interval; schema migrations match the models."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from edgefleet.server.db import Database
from edgefleet.server.tables import Base
from tests.server.conftest import new_fleet, new_tenant, register
from tests.support.fleet_server import PG_URL, pg_schema_url, run_server


def test_two_api_processes_share_postgres(tmp_path: Path) -> None:
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("EDGEFLEET_TEST_PG_URL is not set")
        pytest.skip("EDGEFLEET_TEST_PG_URL is not set")
    with pg_schema_url(PG_URL) as url, \
            run_server(data_dir=tmp_path / "a", database_url=url) as a, \
            run_server(data_dir=tmp_path / "b", database_url=url) as b:
        assert b.admin_token == ""  # the admin was made once, by the first
        fleet = new_fleet(new_tenant(a))
        device = register(b, fleet)  # registered through B, with a key made through A
        first = b.client(device.api_key).get(f"/device/v3/{device.uuid}/state")
        etag = first.headers["etag"]
        r = fleet.tenant.http.put("/api/v1/variables", json={  # through A
            "device": device.uuid, "kind": "config", "name": "WHERE", "value": "a"})
        assert r.status_code == 200
        deadline = time.monotonic() + 5
        with b.client(device.api_key) as poll_b:
            while True:  # B notices within its refresh interval (0.5 s in tests)
                r = poll_b.get(f"/device/v3/{device.uuid}/state",
                               headers={"If-None-Match": etag})
                if r.status_code == 200:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert r.json()[device.uuid]["config"] == {"WHERE": "a"}
            # a device removed through A loses its key on B as well
            assert fleet.tenant.http.delete(f"/api/v1/devices/{device.uuid}"
                                            ).status_code == 204
            deadline = time.monotonic() + 5
            while poll_b.get(f"/device/v3/{device.uuid}/state").status_code != 401:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        # heartbeats recorded by B show through A
        d2 = register(a, fleet)
        b.client(d2.api_key).get(f"/device/v3/{d2.uuid}/state")
        deadline = time.monotonic() + 5
        while fleet.tenant.http.get(f"/api/v1/devices/{d2.uuid}").json()["last_seen_ms"] \
                is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def migration_head() -> str:
    """The one head revision of the server's migrations."""
    from alembic.script import ScriptDirectory

    import edgefleet.server.migrations as mig

    heads = ScriptDirectory(str(Path(mig.__file__).parent)).get_heads()
    assert len(heads) == 1, f"the migrations have several heads: {heads}"
    return str(heads[0])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_the_models(backend: str) -> None:
    if backend == "postgres" and not PG_URL:
        pytest.skip("EDGEFLEET_TEST_PG_URL is not set")
    with tempfile.TemporaryDirectory() as d:
        ctx = pg_schema_url(PG_URL) if backend == "postgres" else None
        url = ctx.__enter__() if ctx else f"sqlite:///{d}/s.sqlite"
        try:
            db = Database(url=url)
            with db.engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
                version = conn.execute(sa.text("SELECT version_num FROM alembic_version")
                                       ).scalar()
            db.close()
            assert diff == [] and version == migration_head()
            Database(url=url).close()  # opening again migrates nothing and keeps the data
        finally:
            if ctx:
                ctx.__exit__(None, None, None)
