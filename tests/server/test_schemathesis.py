"""schemathesis against the live server's OpenAPI document: no request makes a 5xx.

Each operation gets a bounded number of generated requests (hypothesis), sent over real HTTP
with a user token (user API) or a registered device's key (device API)."""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.server.conftest import DeviceInfo, Tenant
from tests.support.fleet_server import RunningServer

EXAMPLES = int(os.environ.get("EDGEFLEET_FUZZ_EXAMPLES", "12"))
schemathesis.serializer.alias("application/x-tar", "application/octet-stream")


def test_no_server_errors(server: RunningServer, tenant: Tenant, device: DeviceInfo) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20
    tried: list[str] = []
    for op in operations:
        tried.append(f"{op.method.upper()} {op.path}")
        fuzz(op, server, tenant, device)
    assert "PATCH /device/v3/state" in tried and "POST /device/register" in tried


def fuzz(op: Any, server: RunningServer, tenant: Tenant, device: DeviceInfo) -> None:
    """Send generated requests to one operation; any 5xx fails."""

    @given(case=op.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        token = tenant.token
        if op.path.startswith("/device/"):
            token = device.api_key
            if isinstance(case.path_parameters, dict) and "uuid" in case.path_parameters:
                case.path_parameters["uuid"] = device.uuid
            if isinstance(case.body, dict) and case.body:  # a report for this device
                case.body = {device.uuid: next(iter(case.body.values()))}
            if isinstance(case.query, dict) and case.query.get("stream"):
                case.query["stream"] = 0  # following never ends; tested elsewhere
        case.call_and_validate(base_url=server.url,
                               headers={"Authorization": f"Bearer {token}"},
                               checks=[not_a_server_error], timeout=30)

    run()
