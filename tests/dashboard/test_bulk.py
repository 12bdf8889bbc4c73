"""Bulk actions on the devices table in the browser: pin selected devices to a release (and
back), move selected devices to another fleet of the same device type."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import Dash, close, sign_in

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def register_stand_in(dash: Dash, name: str) -> str:
    """A second device of the fleet (registered, never running): safe to move away."""
    with dash.fleet.api() as c:
        fleet = c.get(f"/fleets/{dash.fleet_name}").json()
        key = c.post(f"/fleets/{dash.fleet_name}/provisioning-keys",
                     json={"name": "bulk test"}).json()["key"]
    uuid = secrets.token_hex(16)
    r = httpx.post(f"{dash.url}/device/register", json={
        "application": fleet["id"], "device_type": "generic-amd64", "uuid": uuid,
        "api_key": secrets.token_hex(16)}, headers={"Authorization": f"Bearer {key}"})
    r.raise_for_status()
    with dash.fleet.api() as c:
        c.patch(f"/devices/{uuid}", json={"name": name}).raise_for_status()
    return uuid


def test_bulk_pin_and_move(browser: Any, dash: Dash) -> None:
    stand_in = register_stand_in(dash, "stand-in")
    with dash.fleet.api() as c:
        c.post("/fleets", json={"name": "dash-other", "device_type": "generic-amd64"})
    page = sign_in(browser, dash)
    page.locator("article.fleet", has_text="dash-other").wait_for()
    page.get_by_role("link", name=dash.fleet_name, exact=True).click()

    page.get_by_label(f"Select {dash.device.uuid[:7]}").check()
    page.get_by_label("Release", exact=True).select_option(dash.commit)
    page.get_by_role("button", name="Pin to release").click()
    expect(page.locator("#bulk-result")).to_contain_text(f"1 device(s) pinned to "
                                                         f"{dash.commit[:7]}")
    assert dash.fleet.device(dash.device.uuid)["pinned_release"] == dash.commit
    page.reload()
    page.get_by_label(f"Select {dash.device.uuid[:7]}").check()
    page.get_by_label("Release", exact=True).select_option("latest")
    page.get_by_role("button", name="Pin to release").click()
    expect(page.locator("#bulk-result")).to_contain_text("follow the fleet's release")
    assert dash.fleet.device(dash.device.uuid)["pinned_release"] is None

    page.reload()
    page.get_by_label("Select stand-in").check()
    page.get_by_label("Fleet", exact=True).select_option(label="dash-other")
    page.get_by_role("button", name="Move to fleet").click()
    expect(page.locator("#bulk-result")).to_contain_text("1 device(s) moved to dash-other")
    assert dash.fleet.device(stand_in)["fleet"] == "dash-other"
    assert dash.fleet.device(dash.device.uuid)["fleet"] == dash.fleet_name
    close(page)
