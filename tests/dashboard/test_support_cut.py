"""Support access from the dashboard without a browser (one server on SQLite and a fake
device: fast). A support agent's sessions last only as long as the grant: an owner grants the
whole fleet from the fleet page, the agent opens the web terminal and the live logs, the
owner revokes from the page, and both end within a few seconds (the terminal says why; the
audit trail records the cut). And only who may grant is offered grants and revokes."""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from edgefleet.server.web.device import ACCESS_RECHECK_S, RECHECK_S
from tests.dashboard.test_scaleout import in_thread, signed_in
from tests.server.conftest import new_tenant
from tests.support.fleet_server import RunningServer, run_server
from tests.support.scaleout import HeldDevice, device_on

ENDS_WITHIN_S = 5.0
"""The guard re-checks every second; the rest is slack for a busy machine."""
LOGS_END_WITHIN_S = ACCESS_RECHECK_S + RECHECK_S + 3.0
"""A live-log page re-checks access every ACCESS_RECHECK_S, at its next wake-up."""


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with tempfile.TemporaryDirectory() as data, run_server(data_dir=Path(data)) as srv:
        yield srv


def support_agent(server: RunningServer) -> tuple[str, str]:
    name, password = f"sup{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    with server.client(server.admin_token) as admin:
        admin.post("/api/v1/users", json={"username": name, "is_support": True}
                   ).raise_for_status()
        admin.put(f"/api/v1/users/{name}/password", json={"password": password}
                  ).raise_for_status()
    return name, password


def test_revoking_from_the_page_ends_the_agents_terminal_and_logs(
        server: RunningServer) -> None:
    in_thread(revoke_cuts(server))


async def revoke_cuts(server: RunningServer) -> None:
    async with device_on(server, via=server) as held:
        owner, owner_csrf = await asyncio.to_thread(signed_in, server.url,
                                                    held.tenant.username, held.password)
        fleet = held.device.fleet.uuid
        r = await asyncio.to_thread(owner.post, "/ui/support/grants", data={
            "fleet": fleet, "duration_s": "3600", "csrf": owner_csrf})
        assert r.status_code == 303 and r.headers["location"].endswith("#support"), r.text
        page = (await asyncio.to_thread(owner.get, f"/ui/fleets/{fleet}")).text
        revoke = re.search(r'action="(/ui/support/grants/\d+/revoke)"', page)
        assert revoke and "whole fleet" in page

        name, password = await asyncio.to_thread(support_agent, server)
        agent, agent_csrf = await asyncio.to_thread(signed_in, server.url, name, password)
        listed = (await asyncio.to_thread(agent.get, f"/ui/fleets/{fleet}")).text
        assert held.device.uuid in listed, "a fleet-wide grant shows the fleet's devices"
        assert "/ui/support/confirm" not in listed and "/revoke" not in listed, \
            "the agent is offered neither grants nor revokes"
        await cut_both(server, held, agent, agent_csrf, revoke.group(1), owner, owner_csrf)
        owner.close()
        agent.close()
    audit = (await asyncio.to_thread(
        httpx.get, f"{server.url}/api/v1/audit", params={"device": held.device.uuid},
        headers={"Authorization": f"Bearer {held.tenant.token}"})).json()
    shells = [x["result"] for x in audit if x["kind"] == "shell"]
    assert shells and shells[0].startswith("cut: access to this device ended"), audit


async def cut_both(server: RunningServer, held: HeldDevice, agent: httpx.Client,
                   agent_csrf: str, revoke: str, owner: httpx.Client, owner_csrf: str
                   ) -> None:
    uuid = held.device.uuid
    url = (server.url.replace("http://", "ws://") + f"/ui/devices/{uuid}/terminal/ws"
           f"?csrf={agent_csrf}&service=main")
    async with websockets.connect(url, origin=websockets.Origin(server.url), additional_headers={
            "Cookie": f"edgefleet_session={agent.cookies['edgefleet_session']}"},
            open_timeout=20) as ws, httpx.AsyncClient(
            base_url=server.url, cookies={"edgefleet_session":
                                          agent.cookies["edgefleet_session"]},
            timeout=30) as logs_client:
        first = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(first, bytes) and b"shell main" in first, first
        async with logs_client.stream("GET", f"/ui/devices/{uuid}/logs/events") as logs:
            assert logs.status_code == 200
            events = logs.aiter_text()
            assert "retry:" in await asyncio.wait_for(anext(events), 10)
            r = await asyncio.to_thread(owner.post, revoke, data={"csrf": owner_csrf})
            assert r.status_code == 303, r.text
            revoked = time.monotonic()
            said = await asyncio.wait_for(ws.recv(), ENDS_WITHIN_S)
            assert isinstance(said, str) and "access to this device ended" in said, said
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), ENDS_WITHIN_S)
            rest = ""
            async with asyncio.timeout(LOGS_END_WITHIN_S - (time.monotonic() - revoked)):
                async for text in events:
                    rest += text
            assert "event: ended" in rest, rest
    gone = await asyncio.to_thread(agent.get, f"/ui/devices/{uuid}")
    assert gone.status_code == 404



def test_only_who_may_grant_is_offered_grants(server: RunningServer) -> None:
    """An operator of the organization sees the live grants, but no grant form and no revoke
    button, and the server refuses both from them (403); the owner is offered both."""
    in_thread(operator_is_not_offered(server))


async def operator_is_not_offered(server: RunningServer) -> None:
    async with device_on(server, via=server) as held:
        owner, owner_csrf = await asyncio.to_thread(signed_in, server.url,
                                                    held.tenant.username, held.password)
        fleet, uuid = held.device.fleet.uuid, held.device.uuid
        r = await asyncio.to_thread(owner.post, "/ui/support/grants", data={
            "device": uuid, "duration_s": "600", "csrf": owner_csrf})
        assert r.status_code == 303 and r.headers["location"] == f"/ui/devices/{uuid}#support"
        for page in (f"/ui/fleets/{fleet}", f"/ui/devices/{uuid}"):
            html = (await asyncio.to_thread(owner.get, page)).text
            assert "/ui/support/confirm" in html and "/revoke" in html, page
        grant = re.search(r'/ui/support/grants/(\d+)/revoke', html)
        assert grant

        operator = await asyncio.to_thread(new_tenant, server)
        org = held.tenant.http.get("/api/v1/orgs").json()[0]["handle"]
        held.tenant.http.put(f"/api/v1/orgs/{org}/members", json={
            "username": operator.username, "role": "operator"}).raise_for_status()
        operator.http.put(f"/api/v1/users/{operator.username}/password",
                          json={"password": "operator pass"}).raise_for_status()
        op, op_csrf = await asyncio.to_thread(signed_in, server.url, operator.username,
                                              "operator pass")
        for page in (f"/ui/fleets/{fleet}", f"/ui/devices/{uuid}"):
            html = (await asyncio.to_thread(op.get, page)).text
            assert "/ui/support/confirm" not in html and "/revoke" not in html, page
            assert "tr class=\"grant\"" in html, "the operator sees the live grant"
        refused = await asyncio.to_thread(op.post, "/ui/support/grants", data={
            "fleet": fleet, "duration_s": "600", "csrf": op_csrf})
        assert refused.status_code == 403, refused.text
        refused = await asyncio.to_thread(op.post, f"/ui/support/grants/{grant.group(1)}/revoke",
                                          data={"csrf": op_csrf})
        assert refused.status_code == 403, refused.text
        confirm = await asyncio.to_thread(op.get, "/ui/support/confirm", params={
            "fleet": fleet, "duration_s": "600"})
        assert confirm.status_code == 403
        owner.close()
        op.close()
