"""Replays the requests the real balena CLI sent in tests/e2e/test_balena_cli_cloud.py
(tests/compat/balena-cli/requests.jsonl) and tests/e2e/test_balena_cli_more.py
(requests-more.jsonl: restart of a service, SSH keys, tags, device move, API keys,
organizations) against a fresh server: every
query shape must still be understood (a GET answers 200 in Pine's shape; nothing is refused
as malformed or unsupported, nothing fails with a 5xx), without running the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import Tenant
from tests.support.fleet_server import RunningServer

RECORDING = Path(__file__).resolve().parents[2] / "compat/balena-cli/requests.jsonl"
MORE = RECORDING.with_name("requests-more.jsonl")
SKIP = ("/v3/build", "/device/register", "/device/v2/")
"""Needing a project upload or a device of their own: covered by the end-to-end test."""


def recorded(path: Path = RECORDING) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_recording_is_there_and_was_all_answered() -> None:
    entries = recorded()
    assert len(entries) > 40
    paths = {e["path"].split("(")[0] for e in entries}
    assert {"/actor/v1/whoami", "/v7/application", "/v7/device", "/v3/build",
            "/api-key/v2/", "/v7/device_service_environment_variable"} <= paths
    assert all(e["status"] < 400 for e in entries), [e for e in entries if e["status"] >= 400]


def test_the_second_recording_has_restart_keys_and_tags() -> None:
    entries = recorded(MORE)
    paths = {e["path"].split("(")[0] for e in entries}
    assert {"/v7/user__has__public_key", "/v7/device_tag", "/v7/application_tag",
            "/v7/release_tag"} <= paths
    assert any("image_install" in e["query"] for e in entries)
    assert {"/v7/api_key", "/v7/organization"} <= paths  # api-key list|revoke, org create
    assert any(e["method"] == "PATCH" and "belongs_to__application" in (e.get("body") or {})
               for e in entries)  # device move
    assert all(e["status"] < 400 or e["status"] == 409 for e in entries)  # 409: tag upserts


@pytest.mark.parametrize("path", [RECORDING, MORE], ids=["main", "more"])
def test_replay(server: RunningServer, tenant: Tenant, path: Path) -> None:
    problems = []
    for entry in recorded(path):
        if entry["path"].startswith(SKIP):
            continue
        url = entry["path"] + (f"?{entry['query']}" if entry["query"] else "")
        r = tenant.http.request(entry["method"], url, json=entry.get("body"))
        understood = r.status_code < 500 and r.status_code not in (400, 405)
        if entry["method"] == "GET":
            understood = understood and r.status_code == 200 and (
                not entry["path"].startswith("/v7/")
                or isinstance(r.json().get("d"), list | int))
        if not understood:
            problems.append(f"{entry['method']} {url} -> {r.status_code} {r.text[:300]}")
    assert not problems, "\n".join(problems)
