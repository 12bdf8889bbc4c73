"""The OData translator against a real database: filters, lambdas, nested expands, ordering,
scoping to the caller's rows, and bounded statements (no query per row)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from edgefleet.server import tables as t
from edgefleet.server.balena.odata import ODataError, parse_query
from edgefleet.server.balena.read import ReadContext, read
from edgefleet.server.db import Database
from edgefleet.server.orgs import personal_org

ALICE, BOB = 1, 2


def seed(db: Database, *, fleets: int) -> None:
    with db.session() as s:
        orgs = {}
        for uid, name in ((ALICE, "alice"), (BOB, "bob")):
            user = t.User(id=uid, username=name, created_ms=1)
            s.add(user)
            s.flush()
            orgs[uid] = personal_org(s, user=user).id  # issue 15: fleets belong to one
        s.flush()
        for n in range(fleets):
            for uid in (ALICE, BOB):
                f = t.Fleet(uuid=f"{uid}f{n:030d}", name=f"fleet{n}", owner_id=uid,
                            organization_id=orgs[uid], device_type="generic-amd64",
                            created_ms=1000 + n)
                s.add(f)
                s.flush()
                svc = t.Service(fleet_id=f.id, name="main")
                s.add(svc)
                rels = [t.Release(fleet_id=f.id, commit=f"c{f.id}r{r}", created_ms=r,
                                  status="success" if r < 2 else "failed") for r in range(3)]
                s.add_all(rels)
                s.flush()
                s.add(t.ReleaseImage(release_id=rels[0].id, service_id=svc.id, ref="r/x"))
                for d in range(4):
                    s.add(t.Device(uuid=f"{f.id:04d}{d:028d}", fleet_id=f.id,
                                   name=f"dev{d}-{uid}", device_type="generic-amd64",
                                   running_release_id=rels[0].id if d % 2 else None,
                                   created_ms=d))
                s.add(t.Variable(kind="env", fleet_id=f.id, name="A", value="1"))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(url=f"sqlite:///{tmp_path}/s.sqlite")
    seed(database, fleets=3)
    yield database
    database.close()


def get(db: Database, path: str, query: str = "", user: int = ALICE) -> Any:
    with db.session() as s:
        return read(s, query=parse_query(path=path, raw_query=query),
                    ctx=ReadContext(user_id=user, compute=lambda *_: None))


def test_select_and_unexpanded_foreign_keys(db: Database) -> None:
    rows = get(db, "device", "$select=uuid,belongs_to__application,is_running__release"
                             "&$orderby=uuid&$top=2")
    assert rows[0] == {"uuid": rows[0]["uuid"], "belongs_to__application": {"__id": 1},
                       "is_running__release": None}
    assert rows[1]["is_running__release"] == {"__id": 1}


def test_filters(db: Database) -> None:
    def names(q: str) -> list[str]:
        return [r["device_name"] for r in get(db, "device", q + "&$select=device_name")]

    assert len(names("$filter=device_name%20eq%20'dev1-1'")) == 3
    assert len(names("$filter=startswith(device_name,'dev1')")) == 3
    assert len(names("$filter=device_name%20ne%20'dev1-1'")) == 9
    assert len(names("$filter=is_running__release%20eq%20null")) == 6
    assert len(names("$filter=is_running__release%20ne%20null%20and%20"
                     "(device_name%20eq%20'dev1-1'%20or%20device_name%20eq%20'dev2-1')")) == 3
    assert len(names("$filter=belongs_to__application/app_name%20eq%20'fleet0'")) == 4
    assert len(names("$filter=not%20(belongs_to__application%20eq%201)")) == 8


def test_lambdas(db: Database) -> None:
    apps = get(db, "application", "$select=app_name&$filter=is_directly_accessible_by__user"
                                  "/any(dau:1%20eq%201)%20and%20owns__device/any(d:"
                                  "d/device_name%20eq%20'dev3-1'%20and%20d/uuid%20ne%20null)")
    assert len(apps) == 3
    assert get(db, "application", "$filter=owns__release/all(r:r/status%20eq%20'success')"
                                  "&$select=id") == []
    rows = get(db, "device_service_environment_variable",
               "$filter=service_install/any(si:si/device/any(d:d/belongs_to__application"
               "%20eq%201))")
    assert rows == []
    sis = get(db, "service_install", "$select=id&$filter=installs__service/any(s:"
                                     "s/service_name%20eq%20'main')%20and%20device%20eq%201")
    assert sis == [{"id": 1_000_000 + 1}]


def test_nested_expand_with_options(db: Database) -> None:
    [app] = get(db, "application(1)", (
        "$select=app_name&$expand=owns__device($select=device_name;"
        "$filter=startswith(device_name,'dev');$orderby=device_name%20desc;$top=2;"
        "$expand=is_running__release($select=commit)),owns__release/$count("
        "$filter=status%20eq%20'success'),organization($select=handle)"))
    assert app["app_name"] == "fleet0"
    assert [d["device_name"] for d in app["owns__device"]] == ["dev3-1", "dev2-1"]
    assert app["owns__device"][0]["is_running__release"] == [{"commit": "c1r0"}]
    assert app["owns__device"][1]["is_running__release"] == []
    assert app["owns__release"] == 2
    assert app["organization"] == [{"handle": "alice"}]


def test_ordering_top_skip_and_count(db: Database) -> None:
    rows = get(db, "release", "$select=commit&$orderby=belongs_to__application/app_name%20"
                              "desc,created_at%20desc&$top=2&$skip=1")
    assert [r["commit"] for r in rows] == ["c5r1", "c5r0"]
    assert get(db, "device/$count", "$filter=device_name%20eq%20'dev0-1'") == 3


def test_rows_of_other_users_are_invisible(db: Database) -> None:
    assert len(get(db, "application", "$select=id")) == 3
    assert get(db, "application(2)") == []  # bob's
    assert get(db, "device", "$filter=belongs_to__application%20eq%202") == []
    [org] = get(db, "organization", "$expand=application/$count")
    assert org["handle"] == "alice" and org["application"] == 3
    assert len(get(db, "device_type", "$select=slug")) > 5  # public


def test_errors_name_what_is_wrong(db: Database) -> None:
    with pytest.raises(ODataError, match="unknown resource 'nope'") as err:
        get(db, "nope")
    assert err.value.status == 404
    with pytest.raises(ODataError, match="no field 'colour'"):
        get(db, "device", "$filter=colour%20eq%201")
    with pytest.raises(ODataError, match="is computed"):
        get(db, "device", "$filter=is_online%20eq%20true")
    with pytest.raises(ODataError, match="no navigation property 'owns__cat'"):
        get(db, "application", "$expand=owns__cat")


def count_statements(db: Database, path: str, query: str) -> int:
    seen: list[str] = []

    def listen(*args: Any) -> None:
        seen.append(args[2])

    sa.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        get(db, path, query)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)
    return len(seen)


def test_nested_expands_take_one_statement_per_level(tmp_path: Path) -> None:
    """The statement count is the number of expand levels, whatever the number of rows."""
    query = ("$expand=owns__device($expand=is_running__release($expand=release_image("
             "$expand=image)),service_install),owns__release,is_for__device_type,"
             "application_environment_variable")
    counts = []
    for fleets in (1, 12):
        db = Database(url=f"sqlite:///{tmp_path}/n{fleets}.sqlite")
        seed(db, fleets=fleets)
        counts.append(count_statements(db, "application", query))
        assert len(get(db, "application", query)) == fleets
        db.close()
    assert counts == [9, 9]  # application, 8 expands


def test_many_parents_are_read_in_chunks(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parent keys go into `IN (...)` lists of at most CHUNK values (the database limits bound
    values per statement): still a fixed number of statements per chunk, same answer."""
    from edgefleet.server.balena import read as read_module

    query = "$select=id&$expand=owns__device($select=uuid),owns__release/$count"
    whole = get(db, "application", query)
    monkeypatch.setattr(read_module, "CHUNK", 2)
    assert get(db, "application", query) == whole
    assert count_statements(db, "application", query) == 1 + 2 * 2  # 3 fleets: 2 chunks each
