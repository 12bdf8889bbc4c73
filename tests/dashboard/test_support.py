"""Support access from the dashboard (issue 16): an owner grants a support agent access to the
device from its page, after a confirmation saying what support may do and until when; the
agent, signed in in a second browser context, sees the device but not its variable values
(absent from the HTML) nor the actions the support role forbids, and the server refuses
those actions even when posted with the agent's valid CSRF token; revoking the grant from the
page takes the device away. Runs after test_remote (the device is stopped then: nothing here
needs it running)."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import Dash, close, shot, sign_in

pytestmark = [pytest.mark.engine, pytest.mark.slow]
FORBIDDEN = ("Reboot", "Shut down", "Purge data", "Stop ", "Start ", "Set variable", "Pin",
             "Grant support access", "Revoke")
"""Buttons (by the start of their name) the support agent must not be offered."""
EXPIRY_S = 10
"""A grant short enough to wait out, long enough for the checks made before it ends."""


def support_agent(dash: Dash) -> tuple[str, str]:
    """A support agent with a dashboard password (an admin sets it)."""
    name, password = f"sam{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    with dash.fleet.api() as c:
        c.post("/users", json={"username": name, "is_support": True}).raise_for_status()
        c.put(f"/users/{name}/password", json={"password": password}).raise_for_status()
    return name, password


def test_support_agent_sees_the_device_without_variables_or_forbidden_actions(
        browser: Any, dash: Dash) -> None:
    uuid = dash.device.uuid
    secret = f"s3cr3t-{secrets.token_hex(4)}"
    dash.fleet.cli("env", "set", "SUPPORT_MUST_NOT_SEE", secret, "--device", uuid)
    name, password = support_agent(dash)
    device_name = dash.fleet.device(uuid)["name"]

    owner = sign_in(browser, dash)
    owner.goto(f"{dash.url}/ui/devices/{uuid}")
    assert secret in owner.content(), "the owner sees the value"
    section = owner.locator("#support")
    expect(section).to_contain_text("No support access")
    section.get_by_label("Grant support access for").select_option(label="2 hours")
    section.get_by_role("button", name="Grant support access…").click()
    owner.wait_for_url(re.compile(r".*/ui/support/confirm\?.*"))
    confirm = owner.locator(".confirm-grant")
    expect(confirm).to_contain_text("open a terminal on the host or in a service")
    expect(confirm).to_contain_text("restart its services (one, or all at once)")
    expect(confirm).to_contain_text("Never: see or change variables")
    expect(confirm).to_contain_text("reboot, purge or shut down")
    expect(confirm.locator(".until")).to_contain_text(re.compile(
        r"Until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(2 hours from now\)"))
    shot(owner, "support-grant")
    owner.get_by_role("button", name="Yes, grant support access for 2 hours").click()
    owner.wait_for_url(re.compile(rf".*/ui/devices/{uuid}(#support)?$"))
    grant_row = owner.locator("#support tr.grant")
    expect(grant_row).to_have_count(1)
    expect(grant_row).to_contain_text(device_name)
    expect(grant_row).to_contain_text("admin")
    owner.locator("#support").scroll_into_view_if_needed()
    shot(owner, "support-access")

    agent = sign_in(browser, dash, username=name, password=password)
    expect(agent.locator("main")).to_contain_text(dash.fleet_name)
    agent.get_by_role("link", name=dash.fleet_name).click()
    agent.get_by_role("link", name=device_name).click()
    agent.wait_for_url(re.compile(rf".*/ui/devices/{uuid}$"))
    expect(agent.locator("h1")).to_have_text(device_name)
    html = agent.content()
    assert secret not in html and "SUPPORT_MUST_NOT_SEE" not in html, \
        "variable names and values are not in the support agent's page at all"
    assert 'id="variables"' not in html and 'id="configuration"' not in html
    for path in ("/actions/reboot", "/actions/shutdown", "/actions/purge",
                 "/actions/stop-service", "/variables", "/pin", "/ui/support/"):
        assert path not in html, f"the page offers {path}"
    expect(agent.get_by_role("link", name="Terminal")).to_be_visible()
    expect(agent.get_by_role("button", name=re.compile(r"^Restart "))).not_to_have_count(0)
    for label in FORBIDDEN:
        expect(agent.get_by_role("button", name=re.compile(f"^{label}"))).to_have_count(0)
    expect(agent.locator("#support")).to_contain_text("admin"), "the agent sees until when"

    owner.goto(f"{dash.url}/ui/devices/{uuid}/diagnostics")
    agent.get_by_role("link", name="Diagnostics").click()
    expect(agent.locator("h1")).to_contain_text("Diagnostics")
    assert '"environment"' in owner.content(), "test_remote's run shows the target's values"
    assert '"environment"' not in agent.content(), "the agent's copy has no values"
    agent.go_back()
    csrf = agent.locator('input[name="csrf"]').first.get_attribute("value")
    post = agent.context.request.post

    def forged(path: str, **form: str) -> int:
        return int(post(f"{dash.url}{path}", form={"csrf": csrf or "", **form},
                        max_redirects=0).status)

    assert forged(f"/ui/devices/{uuid}/notes", text="checked by support") == 303, \
        "the token is good: an allowed action goes through"
    base = f"/ui/devices/{uuid}"
    assert forged(f"{base}/variables", name="SUPPORT_MUST_NOT_SEE", value="x") == 403
    for action in ("purge", "reboot", "shutdown", "stop-service"):
        assert forged(f"{base}/actions/{action}", service="frontend", confirm="true",
                      note="forged") == 403, action
    assert forged(f"{base}/pin", release="latest") == 403
    assert forged("/ui/support/grants", device=uuid, duration_s="86400") == 403

    owner.goto(f"{dash.url}/ui/devices/{uuid}")
    owner_csrf = owner.locator('input[name="csrf"]').first.get_attribute("value") or ""
    unconfirmed = owner.context.request.post(
        f"{dash.url}{base}/actions/stop-service", max_redirects=0,
        form={"csrf": owner_csrf, "service": "frontend"})
    assert unconfirmed.status == 428, "an owner's stopping action needs its confirmation too"
    owner.locator("#support tr.grant").get_by_role("button", name=re.compile("^Revoke")).click()
    expect(owner.locator("#support")).to_contain_text("No support access")
    assert secret in owner.content()
    close(owner)

    gone = agent.goto(f"{dash.url}/ui/devices/{uuid}")
    assert gone is not None and gone.status == 404, "the revoked agent loses the device"
    agent.goto(f"{dash.url}/ui/")
    expect(agent.locator("main")).not_to_contain_text(dash.fleet_name)
    assert forged(f"{base}/notes", text="after revoke") == 404
    agent.context.close()


def test_a_grant_allowing_reboot_offers_it_until_it_expires(browser: Any, dash: Dash) -> None:
    """A grant made with "allow reboot" (here from the CLI, for a few seconds) gives the agent
    the Reboot button and nothing else that stops the device, and the server takes the reboot
    past the permission check; when the grant expires (nobody revokes it) the agent's next page
    is a 404 and the owner's page says there is no support access."""
    uuid = dash.device.uuid
    name, password = support_agent(dash)
    grant = json.loads(dash.fleet.cli("support", "grant", uuid, "--for", f"{EXPIRY_S}s",
                                      "--allow-reboot", "--json"))
    agent = sign_in(browser, dash, username=name, password=password)
    agent.goto(f"{dash.url}/ui/devices/{uuid}")
    expect(agent.get_by_role("button", name="Reboot")).to_have_count(1)
    for label in ("Shut down", "Purge data", "Stop ", "Set variable", "Pin",
                  "Grant support access", "Revoke"):
        expect(agent.get_by_role("button", name=re.compile(f"^{label}"))).to_have_count(0)
    csrf = agent.locator('input[name="csrf"]').first.get_attribute("value") or ""
    base = f"{dash.url}/ui/devices/{uuid}/actions/reboot"
    post = agent.context.request.post
    unconfirmed = post(base, form={"csrf": csrf, "note": "hung"}, max_redirects=0)
    assert unconfirmed.status == 428, "a reboot needs its confirmation"
    confirmed = post(base, form={"csrf": csrf, "confirm": "true", "note": "hung"},
                     max_redirects=0)
    assert confirmed.status not in (401, 403, 404, 428), \
        f"the grant lets the agent reboot: {confirmed.status} {confirmed.text()[:200]}"
    assert time.time() * 1000 < grant["expires_ms"], "the checks took longer than the grant"

    time.sleep(max(0.0, grant["expires_ms"] / 1000 - time.time()) + 0.5)
    gone = agent.goto(f"{dash.url}/ui/devices/{uuid}")
    assert gone is not None and gone.status == 404, "the grant expired: the device is gone"
    assert post(base, form={"csrf": csrf, "confirm": "true", "note": "late"},
                max_redirects=0).status == 404
    agent.context.close()
    owner = sign_in(browser, dash)
    owner.goto(f"{dash.url}/ui/devices/{uuid}")
    expect(owner.locator("#support")).to_contain_text("No support access")
    close(owner)
