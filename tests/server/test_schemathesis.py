"""schemathesis against the live server's OpenAPI document: no request makes a 5xx.

Each operation gets a bounded number of generated requests (hypothesis), sent over real HTTP
with a user token (user API) or a registered device's key (device API)."""

from __future__ import annotations

import os
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from tests.server.conftest import DeviceInfo, Tenant, new_fleet, new_tenant, register
from tests.support.fleet_server import RunningServer
from tests.support.fuzz import note_server_error

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


STATEFUL_SCENARIOS = int(os.environ.get("EDGEFLEET_FUZZ_SCENARIOS", "25"))


def test_stateful_links_no_server_errors(server: RunningServer) -> None:
    """schemathesis's state machine follows the document's OpenAPI links (a created fleet's
    name into show / change / remove it, a listed device's uuid, a release's commit): no
    sequence of calls makes a 5xx. Each scenario starts from a fresh user with one fleet and
    one device, so that the same choices meet the same state."""
    # the fleet, device, release and variable operations whose links this is about (issue
    # 15's organizations, grants, tokens and audit have their own matrix: with them in, the
    # scenarios spread too thin to follow these links, and revoking its own token ends one)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").include(
        path_regex=r"^/(api/v1/(fleets|devices|releases|variables)|device/)")
    doc = httpx.get(f"{server.url}/openapi.json").json()
    created = doc["paths"]["/api/v1/fleets"]["post"]["responses"]["201"]["links"]
    get_fleet = doc["paths"]["/api/v1/fleets/{fleet}"]["get"]["operationId"]
    assert created[get_fleet] == {"operationId": get_fleet,
                                  "parameters": {"fleet": "$response.body#/name"}}
    followed: list[tuple[str, str, int]] = []
    server_errors: list[str] = []

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.tenant = new_tenant(server)
            self.device = register(server, new_fleet(self.tenant))

        def teardown(self) -> None:
            self.tenant.http.close()
            self.device.http.close()

        def before_call(self, case: Any) -> None:
            if case.path.startswith("/device/"):
                if isinstance(case.path_parameters, dict) and "uuid" in case.path_parameters:
                    case.path_parameters["uuid"] = self.device.uuid
                if isinstance(case.body, dict) and case.body and case.method == "PATCH":
                    case.body = {self.device.uuid: next(iter(case.body.values()))}
                if isinstance(case.query, dict) and case.query.get("stream"):
                    case.query["stream"] = 0  # following never ends; tested elsewhere

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            token = self.device.api_key if case.path.startswith("/device/") else \
                self.tenant.token
            return {"base_url": server.url, "timeout": 30,
                    "headers": {"Authorization": f"Bearer {token}"}}

        def after_call(self, response: Any, case: Any) -> None:
            params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
            if self.device.uuid in params.values() or self.device.fleet.name in params.values():
                followed.append((case.method.upper(), case.path, response.status_code))
            note_server_error(server_errors, response, case)

        def validate_response(self, response: Any, case: Any,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])

    try:
        Machine.run(settings=settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=6,
                                      deadline=None, database=None, phases=[Phase.generate],
                                      derandomize=not os.environ.get("EDGEFLEET_FUZZ_RANDOM"),
                                      suppress_health_check=list(HealthCheck)))
    finally:
        assert not server_errors, "\n".join(server_errors)
    # ids that came from replies (generated ones would not name the user's fleet or device)
    paths = {p for _m, p, code in followed if code < 300}
    assert {"/api/v1/fleets/{fleet}", "/api/v1/devices/{device}"} <= paths, sorted(followed)
