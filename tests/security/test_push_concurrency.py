"""Concurrent pushes are capped, per server and per user: a real `edgefleet server run` with
`--max-pushes 3 --max-pushes-per-user 2` gets real concurrent pushes (uploads held open half
sent, and a real build on the shared dockerd). A push beyond a cap is refused at once (429
per user, 503 for the server, both with Retry-After and a message naming the setting), leaves
no work directory and records nothing; the running pushes all finish as releases."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.security import hostile
from tests.security.conftest import SecServer, start_server, stop_server
from tests.support import images

MAX_PUSHES = 3
MAX_PER_USER = 2
IMAGE = f"{images.REGISTRY}/edgefleet-sec/never-pulled:1"


@dataclass
class Tenant:
    token: str
    fleet: str


def tenant(server: SecServer) -> Tenant:
    """A new ordinary user with one fleet."""
    with server.client(server.admin_token) as admin:
        r = admin.post("/api/v1/users", json={"username": f"u{uuid.uuid4().hex[:10]}"})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
    fleet = f"fleet-{uuid.uuid4().hex[:8]}"
    with server.client(token) as c:
        r = c.post("/api/v1/fleets", json={"name": fleet, "device_type": "generic-amd64"})
        assert r.status_code == 201, r.text
    return Tenant(token=token, fleet=fleet)


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


IMAGE_ONLY = tar_bytes({"docker-compose.yml": f"services:\n  app:\n    image: {IMAGE}\n"
                        .encode()})
SLOW_BUILD = tar_bytes({  # the nonce keeps the engine's build cache from skipping the sleep
    "Dockerfile": b'FROM scratch\nCOPY busybox /bin/busybox\nCOPY nonce /nonce\n'
                  b'RUN ["/bin/busybox", "sleep", "8"]\n',
    "busybox": Path(images.BUSYBOX).read_bytes(), "nonce": uuid.uuid4().bytes})


@dataclass
class Push:
    """A push running in a thread; with `hold`, its upload stops half sent until `let_go`."""

    server: SecServer
    who: Tenant
    body: bytes
    hold: bool = False
    abort: bool = False
    gate: threading.Event = field(default_factory=threading.Event)
    first_line: threading.Event = field(default_factory=threading.Event)
    result: list[httpx.Response | BaseException] = field(default_factory=list)
    lines: list[dict[str, object]] = field(default_factory=list)

    def body_parts(self) -> Iterator[bytes]:
        half = len(self.body) // 2
        yield self.body[:half]
        if self.hold:
            if not self.gate.wait(60):
                raise TimeoutError("never let go")
            if self.abort:
                raise ConnectionAbortedError("the client goes away mid-upload")
        yield self.body[half:]

    def run(self) -> None:
        try:
            with self.server.client(self.who.token, timeout=120) as c, c.stream(
                    "POST", f"/api/v1/fleets/{self.who.fleet}/releases",
                    content=self.body_parts(),
                    headers={"Content-Type": "application/x-tar"}) as r:
                for line in r.iter_lines():
                    if line.strip() and r.status_code == 200:
                        self.lines.append(json.loads(line))
                        self.first_line.set()
                self.result.append(r)
        except BaseException as exc:
            self.result.append(exc)
        finally:
            self.first_line.set()

    def start(self) -> Push:
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def let_go(self) -> None:
        self.gate.set()

    def answer_or_error(self, timeout: float = 90) -> httpx.Response | BaseException:
        until(lambda: bool(self.result), timeout, "the push to end")
        return self.result[0]

    def answer(self, timeout: float = 90) -> httpx.Response:
        until(lambda: bool(self.result), timeout, "the push to end")
        got = self.result[0]
        assert isinstance(got, httpx.Response), repr(got)
        return got

    def done(self) -> dict[str, object]:
        r = self.answer()
        assert r.status_code == 200, r.text[:300]
        return self.lines[-1]


def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


def push_now(server: SecServer, who: Tenant, body: bytes = IMAGE_ONLY) -> httpx.Response:
    with server.client(who.token) as c:
        r = c.post(f"/api/v1/fleets/{who.fleet}/releases", content=body,
                   headers={"Content-Type": "application/x-tar"})
        r.read()
        return r


def releases(server: SecServer, who: Tenant) -> list[dict[str, object]]:
    with server.client(who.token) as c:
        r = c.get(f"/api/v1/fleets/{who.fleet}/releases")
        assert r.status_code == 200, r.text
        out: list[dict[str, object]] = r.json()
        return out


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecServer]:
    server = start_server(tmp_path_factory.mktemp("secbox"), "--max-pushes", str(MAX_PUSHES),
                          "--max-pushes-per-user", str(MAX_PER_USER))
    try:
        yield server
    finally:
        stop_server(server)


def refused(r: httpx.Response, status: int, setting: str) -> None:
    assert r.status_code == status, r.text[:300]
    assert int(r.headers["Retry-After"]) > 0
    detail = r.json()["detail"]
    assert setting in detail and "again" in detail, detail


def test_pushes_beyond_the_caps_are_refused_and_the_running_ones_finish(
        capped: SecServer) -> None:
    a, b, c = tenant(capped), tenant(capped), tenant(capped)
    pushes: list[Push] = []
    try:
        building = Push(capped, a, SLOW_BUILD).start()  # a real build on the engine
        pushes.append(building)
        assert building.first_line.wait(60) and building.lines, building.result
        held_a = Push(capped, a, IMAGE_ONLY, hold=True).start()
        pushes.append(held_a)
        until(lambda: len(capped.push_workdirs()) == 2, 30, "two pushes of A to start")

        refused(push_now(capped, a), 429, "--max-pushes-per-user 2")
        refused(push_now(capped, a, SLOW_BUILD), 429, "--max-pushes-per-user")
        assert len(capped.push_workdirs()) == 2  # the refused ones left nothing

        held_b = Push(capped, b, IMAGE_ONLY, hold=True).start()
        pushes.append(held_b)
        until(lambda: len(capped.push_workdirs()) == 3, 30, "B's push to start")
        refused(push_now(capped, c), 503, "--max-pushes 3")
        refused(push_now(capped, b), 503, "--max-pushes 3")
        assert releases(capped, c) == []
        assert building.result == [], "the build should still run (it sleeps 8 s)"

        held_a.let_go()
        held_b.let_go()
        for p in (building, held_a, held_b):
            assert p.done()["status"] == "success", p.lines
        assert sorted(str(r["status"]) for r in releases(capped, a)) == ["success"] * 2
        assert [r["status"] for r in releases(capped, b)] == ["success"]
        until(lambda: capped.push_workdirs() == [], 30, "work directories to go")
        # the slots are free again
        r = push_now(capped, c)
        assert r.status_code == 200 and json.loads(r.text.splitlines()[-1])["status"] == \
            "success", r.text[:300]
    finally:
        for p in pushes:
            p.let_go()
        drop_built_images(capped, a)


def drop_built_images(server: SecServer, who: Tenant) -> None:
    """Remove from the shared engine the images this fleet's builds left there (tagged with
    the release's commit)."""
    refs = [f"{str(img['ref']).split('@')[0]}:{rel['commit']}"
            for rel in releases(server, who) for img in rel["images"]  # type: ignore[attr-defined]
            if not str(img["ref"]).startswith(IMAGE)]
    with images.engine_client() as engine:
        for ref in refs:
            engine.delete(f"/images/{ref}", params={"force": "1"})


def test_failed_and_abandoned_pushes_give_their_slot_back(capped: SecServer) -> None:
    d = tenant(capped)
    bad = hostile.tar_of([("../../../planted.txt", b"x", tarfile.REGTYPE, "")])
    for _ in range(MAX_PER_USER + 1):
        assert push_now(capped, d, bad).status_code == 400
    for _ in range(MAX_PER_USER + 1):
        gone = Push(capped, d, IMAGE_ONLY, hold=True, abort=True).start()
        until(lambda: len(capped.push_workdirs()) == 1, 30, "the push to start")
        gone.let_go()
        gone.answer_or_error()
        until(lambda: capped.push_workdirs() == [], 30, "the abandoned push to be cleaned")
    held = [Push(capped, d, IMAGE_ONLY, hold=True).start() for _ in range(MAX_PER_USER)]
    try:
        until(lambda: len(capped.push_workdirs()) == MAX_PER_USER, 30, "both pushes")
    finally:
        for p in held:
            p.let_go()
    ends = [p.done() for p in held]
    assert [e["status"] for e in ends] == ["success"] * MAX_PER_USER, ends
