"""Dashboard passwords and sessions against a real server (in a thread, no engine): who may
set whose password, that only a hash is stored, and that a new password ends open sessions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import sqlalchemy as sa

from edgefleet.server import tables as t
from tests.support.fleet_server import run_server


def sign_in(url: str, username: str, password: str) -> httpx.Response:
    c = httpx.Client(base_url=url, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
    assert token
    return c.post("/ui/login", data={"username": username, "password": password,
                                     "csrf": token.group(1)})


def test_passwords_hashed_and_only_set_by_their_user_or_an_admin(tmp_path: Path) -> None:
    with run_server(data_dir=tmp_path) as srv, srv.client(srv.admin_token) as admin:
        bob = admin.post("/api/v1/users", json={"username": "bob"}).json()["token"]
        assert admin.put("/api/v1/users/admin/password",
                         json={"password": "admin secret 1"}).status_code == 204
        with srv.client(bob) as b:
            assert b.put("/api/v1/users/admin/password",
                         json={"password": "taken over!"}).status_code == 403
            assert b.put("/api/v1/users/bob/password", json={"password": "short"}
                         ).status_code == 422
            assert b.put("/api/v1/users/bob/password", json={"password": "bob secret 1"}
                         ).status_code == 204
        with srv.client() as anon:
            assert anon.put("/api/v1/users/bob/password", json={"password": "x" * 12}
                            ).status_code == 401
        with srv.db.session() as s:
            stored = dict(s.execute(sa.select(t.User.username, t.User.password_hash)).all())
        assert stored["bob"].startswith("$argon2id$") and "bob secret 1" not in stored["bob"]
        assert sign_in(srv.url, "admin", "taken over!").status_code == 401
        assert sign_in(srv.url, "bob", "bob secret 1").status_code == 303
        assert sign_in(srv.url, "nobody", "bob secret 1").status_code == 401

        session = sign_in(srv.url, "bob", "bob secret 1")
        cookie = session.cookies.get("edgefleet_session")
        assert cookie and "httponly" in session.headers["set-cookie"].lower()
        assert "samesite=strict" in session.headers["set-cookie"].lower()
        with httpx.Client(base_url=srv.url, cookies={"edgefleet_session": cookie}) as c:
            assert c.get("/ui/").status_code == 200
            admin.put("/api/v1/users/bob/password", json={"password": "bob secret 2"})
            assert c.get("/ui/", headers={"accept": "text/html"}).status_code == 303, \
                "a new password signs the old sessions out"


def test_users_see_only_their_fleets(tmp_path: Path) -> None:
    with run_server(data_dir=tmp_path) as srv, srv.client(srv.admin_token) as admin:
        admin.post("/api/v1/fleets", json={"name": "secret-fleet",
                                           "device_type": "generic-amd64"})
        fleet_uuid = admin.get("/api/v1/fleets/secret-fleet").json()["uuid"]
        eve = admin.post("/api/v1/users", json={"username": "eve"}).json()["token"]
        with srv.client(eve) as e:
            e.put("/api/v1/users/eve/password", json={"password": "eve secret 1"})
        r = sign_in(srv.url, "eve", "eve secret 1")
        with httpx.Client(base_url=srv.url,
                          cookies={"edgefleet_session": r.cookies["edgefleet_session"]}) as c:
            assert "secret-fleet" not in c.get("/ui/").text
            assert c.get(f"/ui/fleets/{fleet_uuid}").status_code == 404


def test_cli_sets_a_password(tmp_path: Path) -> None:
    with run_server(data_dir=tmp_path / "srv") as srv:
        env = {**os.environ, "EDGEFLEET_SERVER": srv.url, "EDGEFLEET_TOKEN": srv.admin_token,
               "EDGEFLEET_CLIENT_CONFIG": str(tmp_path / "cli.json")}
        out = subprocess.run([sys.executable, "-m", "edgefleet", "user", "passwd",
                              "--password-stdin"], input="from the cli 1\n", env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"sign in at {srv.url}/ui/" in out.stdout
        assert sign_in(srv.url, "admin", "from the cli 1").status_code == 303
        short = subprocess.run([sys.executable, "-m", "edgefleet", "user", "passwd",
                                "--password-stdin"], input="short\n", env=env,
                               capture_output=True, text=True, timeout=60)
        assert short.returncode == 1 and "at least 8 characters" in short.stdout + short.stderr
