"""One fleet server process and one real device (a private dockerd and a supervisor process)
running the example app, shared by every browser test; and headless Debian Chromium driven by
Playwright (pointed at /usr/bin/chromium: no browser is downloaded)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.devices import CLI, E2EDevice, wait_for
from tests.e2e.test_fleet import Fleet
from tests.support.dockerd import new_dockerd
from tests.support.fleet import free_port

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
EXAMPLE = Path(__file__).parents[2] / "examples" / "multicontainer"
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


@dataclass
class Dash:
    """The shared set-up: the server, the device, the release and the app's ports."""

    fleet: Fleet
    device: E2EDevice
    fleet_name: str
    commit: str
    frontend_port: int

    @property
    def url(self) -> str:
        return self.fleet.url


def example_project(root: Path, *, frontend: int, backend: int) -> Path:
    """The example app with ports of its own (tests share the host's network)."""
    project = root / "multicontainer"
    shutil.copytree(EXAMPLE, project)
    for dockerfile in project.rglob("Dockerfile"):
        shutil.copy2("/bin/busybox", dockerfile.parent / "busybox")
        text = dockerfile.read_text().replace("8080", str(frontend))
        dockerfile.write_text(text.replace("1234", str(backend)))
    compose = project / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("1234", str(backend)))
    return project


@pytest.fixture(scope="package")
def dash(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[Dash]:
    root = tmp_path_factory.mktemp("dash")
    port = free_port()
    log = root / "server.log"
    token_file = root / "server" / "admin.token"
    proc = subprocess.Popen(
        [*CLI, "server", "run", "--data-dir", str(root / "server"), "--port", str(port),
         "--registry", registry, "--heartbeat-timeout", "15", "--offline-grace", "2",
         "--admin-token-file", str(token_file)],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    engine = new_dockerd()
    device = E2EDevice(name="dash1", dockerd=engine, root=root / "dev")
    try:
        engine.start()
        wait_for("the fleet server", lambda: httpx.get(f"{url}/ping", timeout=2).text == "OK",
                 timeout=60)
        fleet = Fleet(url=url, token=token_file.read_text().strip(), proc=proc, log=log)
        with fleet.api() as c:
            c.put("/users/admin/password", json={"password": PASSWORD}).raise_for_status()
        fleet.cli("fleet", "create", "dash", "--type", "generic-amd64")
        conf = root / "provisioning.json"
        fleet.cli("device", "config", "dash", "-o", str(conf), "--poll-interval", "10000")
        device.provision(json.loads(conf.read_text()))
        device.start()
        wait_for("the device to register", lambda: device.uuid, timeout=60)
        frontend = free_port()
        commit = fleet.push("dash", example_project(root, frontend=frontend,
                                                    backend=free_port()))
        wait_for("the device to run the example app",
                 lambda: device.running_commits() == {"frontend": commit, "backend": commit},
                 timeout=120)
        wait_for("the server to see the device done",
                 lambda: fleet.device(device.uuid)["update_status"] == "done", timeout=60)
        yield Dash(fleet=fleet, device=device, fleet_name="dash", commit=commit,
                   frontend_port=frontend)
    except BaseException:
        print(f"--- supervisor log ---\n{device.log_tail(60)}")
        print(f"--- server log ---\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        device.stop()
        device.remove_containers()
        engine.cleanup()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # a browser still holding a live-log stream
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def sign_in(browser: Any, dash: Dash, *, width: int = 1280, height: int = 900,
            username: str = "admin", password: str = PASSWORD) -> Any:
    """A new browser page (in a browser context of its own), signed in as `username`."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(20_000)
    page = context.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}")
            if r.status >= 400 else None)
    page.on("pageerror", lambda e: failed.append(f"script error: {e}"))
    page.failed = failed  # checked by `close`
    page.goto(f"{dash.url}/ui/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/ui/$"))
    return page


def shot(page: Any, name: str) -> None:
    """Save a screenshot of the page for docs/screenshots (regenerated by every run)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def close(page: Any) -> None:
    """Close a page from `sign_in`, failing on any error answer or script error it saw."""
    failed = list(page.failed)
    page.close()
    assert failed == [], failed
