"""The dashboard in a real browser (Debian's headless Chromium through Playwright) against a
real server process and a real device running the example app."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import Dash, close, shot, sign_in

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_sign_in_and_see_the_fleet_and_its_device(browser: Any, dash: Dash) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{dash.url}/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/"))
    shot(page, "sign-in")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").first).to_contain_text("Wrong username or password")
    context.close()

    page = sign_in(browser, dash)
    card = page.locator("article.fleet").filter(
        has=page.get_by_role("link", name=dash.fleet_name, exact=True))
    expect(card.locator(".count.st-online dd")).to_have_text("1")
    expect(card).to_contain_text(dash.commit[:7])
    shot(page, "fleets")

    card.get_by_role("link", name=dash.fleet_name).click()
    row = page.locator("table.devices tbody tr", has_text=dash.device.uuid[:7])
    expect(row).to_contain_text("Online")
    expect(row).to_contain_text(dash.commit[:7])
    expect(row).to_contain_text("done")
    shot(page, "fleet")
    with page.expect_response(lambda r: "/devices?" in r.url, timeout=10_000) as polled:
        pass  # the table refreshes itself
    assert polled.value.status == 200, polled.value.text()
    expect(page.locator("#errors")).to_be_empty()

    page.get_by_label("Status", exact=True).select_option("Offline")  # filtered by htmx, no reload
    expect(page.locator("table.devices tbody")).to_contain_text("No devices match")
    page.get_by_label("Status", exact=True).select_option("Online")
    expect(page.locator("table.devices tbody tr", has_text=dash.device.uuid[:7])).to_be_visible()

    row.get_by_role("link").first.click()
    services = page.locator("table.services")
    expect(services.locator("tr[data-service=frontend] .svc-state")).to_have_text("Running")
    expect(services.locator("tr[data-service=backend] .svc-state")).to_have_text("Running")
    close(page)


def test_a_log_line_appears_live_and_pause_holds_it(browser: Any, dash: Dash) -> None:
    page = sign_in(browser, dash)
    page.goto(f"{dash.url}/ui/devices/{dash.device.uuid}")
    logs = page.locator("#log-lines")
    expect(page.locator("#log-state")).to_have_text("live")
    def served() -> int:  # busybox httpd -v logs one "response:" line per request
        return int(page.evaluate("[...document.querySelectorAll('#log-lines div')]"
                                 ".filter(d => d.textContent.includes('response:')).length"))

    def request() -> None:
        httpx.get(f"http://127.0.0.1:{dash.frontend_port}/missing", timeout=10)

    before = served()
    request()
    expect(logs.locator("div", has_text="response:")).to_have_count(before + 1,
                                                                     timeout=30_000)
    shot(page, "device")

    page.get_by_role("button", name="Pause").click()
    request()
    expect(page.locator("#log-state")).to_contain_text("1 new", timeout=30_000)
    assert served() == before + 1, "a paused view holds new lines back"
    page.get_by_role("button", name="Resume").click()
    expect(logs.locator("div", has_text="response:")).to_have_count(before + 2)

    frontend_id = page.locator("#log-service option", has_text="frontend").get_attribute(
        "value")
    page.locator("#log-service").select_option(frontend_id)  # only frontend lines now
    expect(logs).to_contain_text("Started service 'frontend'")
    expect(logs.locator("div", has_text="response:")).to_have_count(before + 2)
    expect(logs).not_to_contain_text("[backend]")
    with page.expect_download() as dl:
        page.get_by_role("link", name="Download").click()
    text = dl.value.path().read_text()
    assert text.count("response:") == before + 2 and "[backend]" not in text
    close(page)


def test_changing_a_variable_restarts_the_service(browser: Any, dash: Dash) -> None:
    page = sign_in(browser, dash)
    page.goto(f"{dash.url}/ui/devices/{dash.device.uuid}")
    expect(page.locator("#log-state")).to_have_text("live")
    started = page.locator("#log-lines div", has_text="Started service 'backend'")
    expect(started.first).to_be_visible()
    before = started.count()
    value = f"v{secrets.token_hex(3)}"
    form = page.get_by_role("form", name="Set an environment variable")
    form.get_by_label("Name").fill("DASH_GREETING")
    form.get_by_label("Value").fill(value)
    form.get_by_label("Service").select_option("backend")
    form.get_by_role("button", name="Set variable").click()
    row = page.locator("table.vars tr", has_text="DASH_GREETING")
    expect(row).to_contain_text(value)
    expect(row).to_contain_text("device+service")
    logs = page.locator("#log-lines")
    expect(logs).to_contain_text("Killing service 'backend'", timeout=60_000)
    expect(started).to_have_count(before + 1, timeout=60_000)
    env = dash.device.containers()["backend"]["Config"]["Env"]
    assert f"DASH_GREETING={value}" in env
    close(page)


def test_phone_width_and_keyboard(browser: Any, dash: Dash) -> None:
    page = sign_in(browser, dash, width=390, height=844)
    page.goto(f"{dash.url}/ui/devices/{dash.device.uuid}")
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate("""[...document.querySelectorAll('body *')].filter(e =>
        e.getBoundingClientRect().right > 400 && !e.closest('.table-wrap, table, .log'))
        .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)""")
    assert width <= 400, f"the device page scrolls sideways at phone width ({width}px): {wide}"
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    unlabelled = page.evaluate("""[...document.querySelectorAll(
            'input:not([type=hidden]),select,textarea,button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                     && !e.textContent.trim())
        .map(e => e.outerHTML)""")
    assert unlabelled == []
    shot(page, "device-phone")
    close(page)
