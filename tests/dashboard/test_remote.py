"""The dashboard's remote parts through the real tunnel: diagnostics of a device with a planted
fault, a service restart with its confirmation dialog, and the web terminal (xterm.js) into a
service; each is in the audit trail. Runs after test_pages (the last test stops the device)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import Dash, close, shot, sign_in
from tests.e2e.devices import wait_for

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def audit(dash: Dash) -> list[dict[str, Any]]:
    r = httpx.get(f"{dash.url}/api/v1/audit", params={"device": dash.device.uuid},
                  headers={"Authorization": f"Bearer {dash.fleet.token}"}, timeout=30)
    r.raise_for_status()
    return list(r.json())


def connected(dash: Dash) -> bool:
    return bool(dash.fleet.device(dash.device.uuid)["status"] == "Online"
                and dash.fleet.device(dash.device.uuid)["reported"].get("api_port"))


def test_diagnostics_show_a_planted_fault_first(browser: Any, dash: Dash) -> None:
    wait_for("the device's tunnel", lambda: connected(dash), timeout=60)
    record = dash.device.root / "data" / "engine-starts.jsonl"  # an engine that crashed
    now = time.time()
    with record.open("a") as fh:
        fh.write(json.dumps({"pid": 4242, "started_at": now - 300, "ended_at": now - 200,
                             "clean": False, "pidfile_inode": 0}) + "\n")
    page = sign_in(browser, dash)
    page.goto(f"{dash.url}/ui/devices/{dash.device.uuid}")
    page.get_by_role("link", name="Diagnostics").click()
    page.get_by_role("button", name="Run diagnostics now").click()
    page.wait_for_url(re.compile(r"/diagnostics\?run=\d+"), timeout=90_000)
    first = page.locator("table.checks tbody tr").first
    expect(first).to_have_attribute("data-check", "check_container_engine")
    expect(first).to_contain_text("FAILED")
    expect(first).to_contain_text("1 unclean restarts")
    expect(first).to_contain_text("crash loops")  # the check's explanation
    state = page.locator("table.state tbody")
    expect(state.locator("tr", has_text="frontend")).to_contain_text("same")
    expect(page.locator("pre[aria-label='Diagnostics report']")).not_to_be_empty()
    shot(page, "diagnostics")
    assert any(a["kind"] == "diagnostics" and a["target"] == "checks" for a in audit(dash))
    close(page)


def test_restart_a_service_after_confirming_what_stops(browser: Any, dash: Dash) -> None:
    before = dash.device.containers()["frontend"]["State"]["StartedAt"]
    page = sign_in(browser, dash)
    page.goto(f"{dash.url}/ui/devices/{dash.device.uuid}#actions")
    page.get_by_role("button", name="Restart frontend").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("What will stop: Service 'frontend' stops and starts again.")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Restart frontend").click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, restart frontend").click()
    wait_for("frontend to restart", lambda: dash.device.containers()["frontend"]["State"]
             ["StartedAt"] != before, timeout=60)
    assert any(a["kind"] == "action" and a["target"] == "restart-service frontend"
               and a["result"] == "HTTP 200" for a in audit(dash))
    close(page)


def test_terminal_into_a_service(browser: Any, dash: Dash) -> None:
    page = sign_in(browser, dash, width=1100, height=800)
    page.goto(f"{dash.url}/ui/devices/{dash.device.uuid}/terminal?service=frontend")
    expect(page.locator("#term-state")).to_have_text("connected")
    screen = page.locator("#terminal .xterm-rows")
    page.locator("#terminal").click()
    page.keyboard.type("echo dash-$((6*7)) > /tmp/t; cat /tmp/t /www/index.html\n")
    expect(screen).to_contain_text("dash-42")
    expect(screen).to_contain_text("This is the frontend root")
    size = re.compile(r"size=(\d+) (\d+)=")
    page.keyboard.type('echo "size=$(stty size)="\n')
    expect(screen).to_contain_text(size)
    first = size.findall(screen.inner_text())[-1]
    shot(page, "terminal")
    page.set_viewport_size({"width": 700, "height": 500})  # the terminal follows the window
    page.keyboard.type('echo "size=$(stty size)="\n')
    wait_for("the PTY to get the new size", lambda: (found := size.findall(
        screen.inner_text())) and found[-1] != first, timeout=20)
    page.keyboard.type("exit\n")
    expect(page.locator("#term-state")).to_contain_text("exited", timeout=20_000)
    wait_for("the session's audit record", lambda: any(
        a["kind"] == "shell" and a["target"] == "frontend" and a["ended_ms"]
        and a["bytes_up"] > 0 for a in audit(dash)), timeout=20)
    page.goto(f"{dash.url}/ui/")
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Kind").select_option("shell")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_contain_text("frontend")
    expect(rows.first).to_contain_text("(dashboard terminal)")
    expect(page.locator("table.audit tbody")).not_to_contain_text("diagnostics")
    shot(page, "audit")
    close(page)


def test_earlier_runs_stay_readable_when_the_device_is_gone(browser: Any, dash: Dash) -> None:
    dash.device.stop()
    page = sign_in(browser, dash)
    page.goto(f"{dash.url}/ui/devices/{dash.device.uuid}/diagnostics")
    expect(page.locator("table.checks tbody tr").first).to_contain_text("1 unclean restarts")
    wait_for("the device to lose its tunnel", lambda: dash.fleet.device(
        dash.device.uuid)["status"] in ("Heartbeat Only", "Offline"), timeout=60)
    page.reload()
    expect(page.get_by_role("button", name="Run diagnostics now")).to_be_disabled()
    expect(page.locator("table.checks tbody tr").first).to_contain_text("1 unclean restarts")
    close(page)
