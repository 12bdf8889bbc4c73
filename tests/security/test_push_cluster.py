"""The push caps hold for the whole server, not per process: two real `edgefleet server run`
processes on one PostgreSQL, each with `--max-pushes 2 --max-pushes-per-user 1`. A user whose
push runs (held half uploaded) on process A is refused a second one on B (429); with a push
running on each, a third user is refused on either (503). A process killed with SIGKILL in the
middle of a push frees its slots (PostgreSQL drops a dead connection's advisory locks): the
same user's push then goes through on the other process."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.security.conftest import SecServer, start_server, stop_server
from tests.security.test_push_concurrency import (
    IMAGE_ONLY,
    Push,
    Tenant,
    push_now,
    refused,
    tenant,
    until,
)
from tests.support.fleet_server import pg_schema_url

PG_URL = os.environ.get("EDGEFLEET_TEST_PG_URL", "")
CAPS = ("--max-pushes", "2", "--max-pushes-per-user", "1")


@pytest.fixture
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecServer, SecServer]]:
    if not PG_URL:
        pytest.skip("EDGEFLEET_TEST_PG_URL is not set")
    with pg_schema_url(PG_URL) as url:
        a = start_server(tmp_path_factory.mktemp("pusha"), "--database-url", url, *CAPS)
        try:
            b = start_server(tmp_path_factory.mktemp("pushb"), "--database-url", url, *CAPS,
                             admin_token=a.admin_token)
            try:
                yield a, b
            finally:
                stop_server(b)
        finally:
            if a.proc.poll() is None:
                stop_server(a)


def succeeded(server: SecServer, who: Tenant) -> bool:
    r = push_now(server, who)
    return r.status_code == 200 and json.loads(r.text.splitlines()[-1])["status"] == "success"


def test_the_caps_count_the_pushes_of_every_process(two: tuple[SecServer, SecServer]) -> None:
    a, b = two
    alice, bob, carol = tenant(a), tenant(a), tenant(a)
    held = [Push(a, alice, IMAGE_ONLY, hold=True).start()]
    try:
        until(lambda: len(a.push_workdirs()) == 1, 30, "alice's push to start on A")
        refused(push_now(b, alice), 429, "--max-pushes-per-user 1")
        assert b.push_workdirs() == [], "the refused push left nothing"
        held.append(Push(b, bob, IMAGE_ONLY, hold=True).start())
        until(lambda: len(b.push_workdirs()) == 1, 30, "bob's push to start on B")
        refused(push_now(a, carol), 503, "--max-pushes 2")
        refused(push_now(b, carol), 503, "--max-pushes 2")
    finally:
        for p in held:
            p.let_go()
    assert [p.done()["status"] for p in held] == ["success", "success"]
    assert succeeded(b, alice), "alice's slot is free again once her push ended"


def test_a_killed_process_frees_its_slots(two: tuple[SecServer, SecServer]) -> None:
    a, b = two
    dave = tenant(a)
    held = Push(a, dave, IMAGE_ONLY, hold=True).start()
    until(lambda: len(a.push_workdirs()) == 1, 30, "dave's push to start on A")
    refused(push_now(b, dave), 429, "--max-pushes-per-user 1")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(timeout=10)
    held.let_go()
    deadline = time.monotonic() + 15
    while not succeeded(b, dave):
        assert time.monotonic() < deadline, "the dead process's slot was never freed"
        time.sleep(0.3)
