"""Attacks on a real server process: requests without a session or without the session's CSRF
token are refused and change nothing; wrong passwords are braked."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.dashboard.conftest import PASSWORD, Dash
from tests.e2e.devices import CLI, wait_for
from tests.support.fleet import free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def signed_in(url: str, password: str = PASSWORD) -> tuple[httpx.Client, str]:
    """A client holding a session cookie, and that session's CSRF token."""
    c = httpx.Client(base_url=url, timeout=30)
    login = c.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert token
    r = c.post("/ui/login", data={"username": "admin", "password": password,
                                  "csrf": token.group(1)})
    assert r.status_code == 303, r.text
    page = c.get("/ui/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    return c, csrf.group(1)


def test_without_session_or_csrf_nothing_changes(dash: Dash) -> None:
    uuid = dash.device.uuid
    note = f"/ui/devices/{uuid}/notes"
    with httpx.Client(base_url=dash.url, timeout=30) as anon:
        r = anon.get(f"/ui/devices/{uuid}", headers={"accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
        assert anon.get(f"/ui/devices/{uuid}/logs/events").status_code == 401
        assert anon.get(f"/ui/devices/{uuid}/logs.txt").status_code == 401
        assert anon.post(note, data={"text": "anonymous"}).status_code == 401
        assert anon.post("/ui/login", data={"username": "admin", "password": PASSWORD}
                         ).status_code == 403, "a sign-in without its CSRF token is refused"
    with httpx.Client(base_url=dash.url, timeout=30,
                      cookies={"edgefleet_session": "made-up"}) as forger:
        forged = forger.post(f"/ui/devices/{uuid}/notes", data={"text": "forged"})
        assert forged.status_code == 401

    client, csrf = signed_in(dash.url)
    try:
        assert client.post(note, data={"text": "no csrf"}).status_code == 403
        assert client.post(note, data={"text": "bad csrf", "csrf": "x" * 43}).status_code == 403
        assert client.post(note, data={"text": "bad header"},
                           headers={"x-csrf-token": "nope"}).status_code == 403
        assert client.post(f"/ui/devices/{uuid}/variables",
                           data={"name": "EVIL", "value": "1"}).status_code == 403
        assert client.post(f"/ui/devices/{uuid}/pin",
                           data={"release": "latest"}).status_code == 403
        page = client.get(f"/ui/devices/{uuid}").text
        assert "no csrf" not in page and "bad csrf" not in page and "EVIL" not in page
        for action in ("reboot", "restart-service"):
            assert client.post(f"/ui/devices/{uuid}/actions/{action}",
                               data={"service": "frontend"}).status_code == 403
        assert client.post(f"/ui/devices/{uuid}/diagnose").status_code == 403
        terminal_refused(dash, client.cookies["edgefleet_session"], csrf)
        ok = client.post(note, data={"text": "with csrf", "csrf": csrf})
        assert ok.status_code == 303
        assert "with csrf" in client.get(f"/ui/devices/{uuid}").text
        client.post("/ui/logout", data={"csrf": csrf})
        assert client.post(note, data={"text": "after sign-out", "csrf": csrf}
                           ).status_code == 401
    finally:
        client.close()


def terminal_refused(dash: Dash, cookie: str, csrf: str) -> None:
    """The terminal's websocket needs the session, its CSRF token and the page's origin."""
    ws = dash.url.replace("http://", "ws://") + f"/ui/devices/{dash.device.uuid}/terminal/ws"
    same = {"Origin": dash.url}

    def opens(url: str, headers: dict[str, str]) -> bool:
        try:
            with connect(url, additional_headers=headers, open_timeout=10):
                return True
        except InvalidStatus:
            return False

    cookie_header = {"Cookie": f"edgefleet_session={cookie}"}
    assert not opens(f"{ws}?csrf={csrf}", same), "no session cookie"
    assert not opens(f"{ws}?csrf=wrong", {**same, **cookie_header}), "a wrong CSRF token"
    assert not opens(f"{ws}?csrf={csrf}", {"Origin": "http://evil.example", **cookie_header}), \
        "another origin"


def test_wrong_passwords_are_braked(tmp_path: Path) -> None:
    """A separate server process: its brake's per-address count is its own."""
    port = free_port()
    token_file = tmp_path / "admin.token"
    proc = subprocess.Popen([*CLI, "server", "run", "--data-dir", str(tmp_path / "srv"),
                             "--port", str(port), "--no-registry",
                             "--admin-token-file", str(token_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the server", lambda: httpx.get(f"{url}/ping", timeout=2).text == "OK",
                 timeout=60)
        httpx.put(f"{url}/api/v1/users/admin/password", json={"password": PASSWORD},
                  headers={"authorization": f"Bearer {token_file.read_text().strip()}"}
                  ).raise_for_status()
        with httpx.Client(base_url=url, timeout=30) as c:
            token = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
            assert token
            codes = [c.post("/ui/login", data={"username": "admin", "password": f"guess{i}",
                                               "csrf": token.group(1)}).status_code
                     for i in range(31)]
            assert codes[:30] == [401] * 30 and codes[30] == 429
            right = c.post("/ui/login", data={"username": "admin", "password": PASSWORD,
                                              "csrf": token.group(1)})
            assert right.status_code == 429, "even the right password waits out the minute"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
