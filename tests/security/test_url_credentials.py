"""URL credentials (`scheme://user:password@host`, `?password=...`) never appear in what
edgefleet shows or logs: `edgefleet config show` / `config get`, the output of a real
`edgefleet server run` (its database URL and public URL), and the output and stored log of a
real `edgefleet supervisor run` whose apiEndpoint carries a password. One function does it:
`edgefleet.model.secret_names.redact_urls`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from edgefleet.model.secret_names import redact_urls
from tests.device.api.test_runtime import start_supervisor
from tests.device.conftest import cleanup_scope
from tests.support import images
from tests.support.fleet_server import PG_URL
from tests.support.registry import free_port

CLI = [sys.executable, "-m", "edgefleet"]
R = "[REDACTED]"


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql+psycopg://edge:dbpass123@127.0.0.1:5432/db",
     f"postgresql+psycopg://{R}@127.0.0.1:5432/db"),
    ("https://robot:p@ss@registry.example.com/v2", f"https://{R}@registry.example.com/v2"),
    ("git https://ghp_TOKEN123@github.com/x", f"git https://{R}@github.com/x"),
    ("postgresql://h/db?sslmode=require&password=qq9&options=-c",
     f"postgresql://h/db?sslmode=require&password={R}&options=-c"),
    ("https://api.example.com/v6?apikey=zz1#f", f"https://api.example.com/v6?apikey={R}#f"),
    ("https://api.example.com/v6?page=2", "https://api.example.com/v6?page=2"),
    ("no url here, user@host and a=b", "no url here, user@host and a=b"),
])
def test_redact_urls(text: str, shown: str) -> None:
    assert redact_urls(text) == shown


def test_config_show_and_get_hide_url_credentials(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "deviceType": "generic-amd64", "uuid": uuid.uuid4().hex,
        "apiEndpoint": "https://fleetop:CfgPassOne1@fleet.example.com",
        "registryEndpoint": "https://robot:CfgPassTwo2@registry.example.com",
        "deltaEndpoint": "https://delta.example.com/?token=CfgPassThree3",
        "installer": {"mirror": "http://mirror:CfgPassFour4@10.0.0.9/debian"}}))
    secrets = ("CfgPassOne1", "CfgPassTwo2", "CfgPassThree3", "CfgPassFour4")

    def cli(*args: str) -> str:
        p = subprocess.run([*CLI, "config", *args, "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout + p.stderr

    shown = cli("show")
    for s in secrets:
        assert s not in shown, s
    doc = json.loads(shown)
    assert doc["apiEndpoint"] == f"https://{R}@fleet.example.com"
    assert doc["deltaEndpoint"] == f"https://delta.example.com/?token={R}"
    got = cli("get", "apiEndpoint")
    assert got.strip() == f"https://{R}@fleet.example.com"
    assert "CfgPassFour4" not in cli("get", "installer")
    assert "CfgPassOne1" in cli("show", "--reveal"), "--reveal still shows everything"


@contextmanager
def pg_role(password: str) -> Iterator[str]:
    """A PostgreSQL role with `password` and a fresh schema of its own: the URL to use."""
    import psycopg

    name = f"efsec_{uuid.uuid4().hex[:10]}"
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    head, _, tail = PG_URL.rpartition("@")
    base = f"{head.split('://')[0]}://{name}@{tail.split('?')[0]}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        conn.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    try:
        yield f"{base}?password={password}&options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")
            conn.execute(f"DROP OWNED BY {name}")
            conn.execute(f"DROP ROLE {name}")


def run_server_until_ready(tmp: Path, *args: str) -> str:
    """Start `edgefleet server run`, wait for /ping, stop it; its whole output."""
    port = free_port()
    log = tmp / "server.log"
    proc = subprocess.Popen(
        [*CLI, "server", "run", "--data-dir", str(tmp / "data"), "--port", str(port),
         "--registry", images.REGISTRY, "--admin-token-file", str(tmp / "admin.token"), *args],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).text == "OK":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return log.read_text()


def test_server_output_hides_url_credentials(tmp_path: Path) -> None:
    public = f"http://ops:PubPass{uuid.uuid4().hex[:8]}@127.0.0.1:1"
    if not PG_URL:
        out = run_server_until_ready(tmp_path, "--public-url", public)
        assert public.split(":")[2].split("@")[0] not in out, out
        assert f"http://{R}@127.0.0.1:1" in out, out
        pytest.skip("EDGEFLEET_TEST_PG_URL is not set: the database URL part did not run")
    db_password = f"DbPass{uuid.uuid4().hex[:10]}"
    with pg_role(db_password) as url:
        out = run_server_until_ready(tmp_path, "--public-url", public, "--database-url", url)
    for secret in (db_password, public.split(":")[2].split("@")[0]):
        assert secret not in out, out
    assert f"password={R}" in out and f"http://{R}@127.0.0.1:1" in out, out


@pytest.mark.engine
def test_supervisor_output_and_stored_log_hide_url_credentials(
        tmp_path: Path, unique: str) -> None:
    secret = f"DevPass{unique}"
    scope = f"url{unique}"
    config = {"deviceType": "generic-amd64", "uuid": uuid.uuid4().hex,
              "deviceApiKey": uuid.uuid4().hex, "appUpdatePollInterval": 3_600_000,
              "apiEndpoint": f"http://fleetop:{secret}@127.0.0.1:{free_port()}"}
    proc, _port, lines = start_supervisor(tmp_path, scope, config)
    try:
        deadline = time.monotonic() + 30
        while not any("Registered with" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cleanup_scope(scope)
    out = "".join(lines)
    assert secret not in out, out
    assert f"Registered with http://{R}@127.0.0.1" in out, out
    with sqlite3.connect(tmp_path / "data" / "edgefleet.sqlite") as db:
        stored = [m for (m,) in db.execute("SELECT message FROM log")]
    assert any("Registered with" in m for m in stored), stored
    assert not [m for m in stored if secret in m], stored
