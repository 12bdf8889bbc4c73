"""Finding 8 of issue 11 (server side), against a real `edgefleet server run` process: request
bodies and JSON depth are capped, malformed input gets a 4xx (never a 500), a release never
records an image name that is not a string, stores and token files are private, no token is
written to the server's log, and failed logins are rate-limited per source address."""

from __future__ import annotations

import json
import stat
import tarfile
import uuid

import httpx
import pytest

from tests.security import hostile
from tests.security.conftest import SecServer, push_raw

STATE_REPORT_CAP = 1 * 2**20
"""Documented in the README's Security section."""


def _device(server: SecServer) -> tuple[str, httpx.Client]:
    with server.client() as user:
        fleet = user.get(f"/api/v1/fleets/{server.fleet}").json()
        key = user.post(f"/api/v1/fleets/{server.fleet}/provisioning-keys", json={})
        assert key.status_code == 201, key.text
    dev_uuid, api_key = uuid.uuid4().hex, uuid.uuid4().hex
    r = httpx.post(f"{server.url}/device/register",
                   headers={"Authorization": f"Bearer {key.json()['key']}"},
                   json={"application": fleet["id"], "device_type": "generic-amd64",
                         "uuid": dev_uuid, "api_key": api_key})
    assert r.status_code == 201, r.text
    return dev_uuid, server.client(api_key)


def test_a_50_mib_state_report_is_refused(secserver: SecServer) -> None:
    dev_uuid, dev = _device(secserver)
    with dev:
        big = {dev_uuid: {"status": "Idle", "junk": "x" * (50 * 2**20)}}
        r = dev.patch("/device/v3/state", content=json.dumps(big),
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text[:300]
        ok = dev.patch("/device/v3/state", json={dev_uuid: {"status": "Idle"}})
        assert ok.status_code == 200, ok.text
    with secserver.client() as user:
        listed = user.get("/api/v1/devices")
        assert listed.status_code == 200 and len(listed.content) < STATE_REPORT_CAP
    assert secserver.rss_kib("VmRSS") < 300 * 1024


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_deeply_nested_report_is_a_400(secserver: SecServer, depth: int) -> None:
    dev_uuid, dev = _device(secserver)
    with dev:
        nested = "[" * depth + "]" * depth
        body = '{"' + dev_uuid + '": {"status": "Idle", "x": ' + nested + "}}"
        r = dev.patch("/device/v3/state", content=body,
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text[:300]
        assert "deep" in r.json()["detail"]


def test_deep_json_bodies_are_a_400_on_every_endpoint(secserver: SecServer) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    with secserver.client() as user:
        for method, path in [("POST", "/api/v1/fleets"), ("PUT", "/api/v1/variables"),
                             ("PATCH", f"/api/v1/fleets/{secserver.fleet}")]:
            r = user.request(method, path, content=deep,
                             headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (path, r.status_code, r.text[:200])
        r = user.post("/api/v1/fleets", content="x" * (2 * 2**20),
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text[:200]


def test_a_log_line_without_end_is_not_buffered(secserver: SecServer) -> None:
    dev_uuid, dev = _device(secserver)
    before = secserver.rss_kib("VmRSS")
    with dev:
        line = json.dumps({"message": "x" * (64 * 2**20), "timestamp": 1, "isSystem": False,
                           "isStdErr": False})
        ok = json.dumps({"message": "fine", "timestamp": 2, "isSystem": False,
                         "isStdErr": False})
        r = dev.post(f"/device/v2/{dev_uuid}/log-stream",
                     content=(line + "\n" + ok + "\n").encode())
        assert r.status_code == 201, r.text[:300]
        assert r.json()["accepted"] == 1 and r.json()["invalid"] == 1, r.json()
    assert secserver.rss_kib("VmRSS") - before < 64 * 1024


def _compose_push(server: SecServer, compose: bytes) -> httpx.Response:
    return push_raw(server, hostile.tar_of(
        [("docker-compose.yml", compose, tarfile.REGTYPE, "")], with_dockerfile=False))


@pytest.mark.parametrize("compose", [
    b"services: {web: [1, 2]}\n",
    b"services:\n  web: {image: " + b"[" * 20_000 + b"]" * 20_000 + b"}\n",
    b"services:\n  web: {image: busybox, x: " + b"9" * 5_000 + b"}\n",
    b"services:\n  web:\n    image: {name: busybox}\n",
    b'services:\n  web:\n    image: "busybox\\0:latest"\n',
    b"services: {web: {image: busybox, environment: {A: " + b"9" * 5_000 + b"}}}\n",
])
def test_malformed_compose_is_a_400_and_no_release(secserver: SecServer,
                                                   compose: bytes) -> None:
    r = _compose_push(secserver, compose)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    with secserver.client() as user:
        releases = user.get(f"/api/v1/fleets/{secserver.fleet}/releases").json()
    assert not [x for x in releases if x["status"] == "success"], releases
    assert secserver.push_workdirs() == []


def test_stores_and_tokens_are_private_and_no_token_in_the_log(secserver: SecServer) -> None:
    for name in ("server.sqlite", "admin.token"):
        mode = stat.S_IMODE((secserver.data_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    for extra in ("server.sqlite-wal", "server.sqlite-shm"):
        path = secserver.data_dir / extra
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, extra
    log = secserver.log.read_text()
    assert secserver.admin_token not in log and secserver.user_token not in log
    assert "admin.token" in log  # it says where the token is instead


def test_failed_logins_are_rate_limited_per_address(secserver: SecServer) -> None:
    """An attacker on 127.0.0.2 guessing tokens is slowed to 429s; a user on 127.0.0.1
    is not affected."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    codes = []
    with httpx.Client(base_url=secserver.url, transport=transport, timeout=10) as attacker:
        for _ in range(60):
            r = attacker.get("/api/v1/whoami",
                             headers={"Authorization": f"Bearer {uuid.uuid4().hex}"})
            codes.append(r.status_code)
        assert set(codes) <= {401, 429} and codes[0] == 401
        assert codes[-1] == 429 and codes.count(401) <= 30, codes
        again = attacker.get("/api/v1/whoami",
                             headers={"Authorization": f"Bearer {secserver.user_token}"})
        assert again.status_code == 429 and "Retry-After" in again.headers
    with secserver.client() as user:
        assert user.get("/api/v1/whoami").status_code == 200
