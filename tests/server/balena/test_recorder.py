"""The request recorder (EDGEFLEET_BALENA_RECORD) keeps what a client sent and never a
secret: no header (tokens), and a registering device's api_key redacted."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from edgefleet.server.balena import RECORD_ENV
from tests.support.fleet_server import run_server


def test_recording_has_requests_but_no_secrets(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "requests.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(record))
    with run_server(data_dir=tmp_path / "srv") as srv, srv.client(srv.admin_token) as admin:
        fleet = admin.post("/api/v1/fleets", json={"name": "rec", "device_type": "generic-amd64"}
                           ).json()
        assert admin.get("/v7/application", params={"$select": "id"}).status_code == 200
        key = admin.post("/api-key/v2/", json={"actorType": "application",
                                               "actorTypeId": fleet["id"],
                                               "roles": ["provisioning-api-key"]}).json()
        device_key = uuid.uuid4().hex
        r = httpx.post(f"{srv.url}/device/register", headers={"Authorization": f"Bearer {key}"},
                       json={"application": fleet["id"], "uuid": uuid.uuid4().hex,
                             "device_type": "generic-amd64", "api_key": device_key})
        assert r.status_code == 201
        assert admin.get("/api/v1/whoami").status_code == 200  # not a balena path
    text = record.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("GET", "/v7/application", 200), ("POST", "/api-key/v2/", 200),
        ("POST", "/device/register", 201)]
    assert entries[0]["query"] == "%24select=id"
    assert entries[2]["body"]["api_key"] == "<redacted>"
    for secret in (srv.admin_token, key, device_key):
        assert secret not in text
