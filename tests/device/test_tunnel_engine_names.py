"""The device side of balena CLI's `device ssh <uuid> <service>`: host sessions talk to the
device's own engine (`docker`, `balena-engine`, `balena`), and `enter <uuid> <container id>`
reaches a running service container of this supervisor's scope only."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.device.tunnel.service import find_container
from edgefleet.device.tunnel.sessions import SessionContext
from edgefleet.engine.errors import NotFound
from tests.support import images

pytestmark = pytest.mark.engine
SOCK = images.DOCKER_SOCK


@pytest.fixture
def containers(unique: str) -> Iterator[dict[str, str]]:
    """Running service containers of scope `mine-<unique>` and of another scope, and a
    container no supervisor runs; their ids."""
    images.build("ef-tunnel-names:v1")
    made: dict[str, str] = {}
    with images.engine_client(SOCK) as c:
        try:
            for name, labels in (
                    ("mine", {"io.balena.service-name": "main", "io.balena.supervised": "true",
                              "io.edgefleet.scope": f"mine-{unique}"}),
                    ("other", {"io.balena.service-name": "main", "io.balena.supervised": "true",
                               "io.edgefleet.scope": f"other-{unique}"}),
                    ("plain", {})):
                r = c.post("/containers/create", params={"name": f"ef-names-{name}-{unique}"},
                           json={"Image": "ef-tunnel-names:v1", "Labels": labels})
                r.raise_for_status()
                made[name] = r.json()["Id"]
                c.post(f"/containers/{made[name]}/start").raise_for_status()
            yield made
        finally:
            for cid in made.values():
                c.delete(f"/containers/{cid}", params={"force": "1"})


def test_enter_by_container_id_stays_in_scope(containers: dict[str, str], unique: str) -> None:
    scope = f"mine-{unique}"

    def find(name: str) -> str:
        return asyncio.run(find_container(socket=SOCK, scope=scope, service=name))

    assert find("main") == containers["mine"]
    assert find(containers["mine"][:12]) == containers["mine"]  # as `docker ps` shows it
    assert find(containers["mine"]) == containers["mine"]
    for name in (containers["other"][:12], containers["plain"][:12], "0123456789ab", "nosuch"):
        with pytest.raises(NotFound):
            find(name)


def test_host_sessions_reach_the_devices_engine(containers: dict[str, str],
                                               tmp_path: Path) -> None:
    """`docker`, `balena-engine` and `balena` in a host session use the engine socket the
    supervisor was given (a test device's is not the default one)."""
    engine = tmp_path / "engine.sock"
    engine.symlink_to(SOCK)
    gone = SessionContext(engine_socket=str(tmp_path / "gone.sock"), scope="x").host_env()
    env = SessionContext(engine_socket=str(engine), scope="x").host_env()
    for program in ("docker", "balena-engine", "balena"):
        ps = ["/bin/sh", "-c", f'{program} ps --format "{{{{.ID}}}}"']
        out = subprocess.run(ps, env=env, capture_output=True, text=True, timeout=60)
        assert containers["mine"][:12] in out.stdout.split(), (program, out)
        out = subprocess.run(ps, env=gone, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "gone.sock" in out.stderr, (program, out)


def test_engine_shims_come_back_when_removed() -> None:
    """A /tmp cleaner removing the scripts' directory does not lose `balena-engine`: the
    next host session gets a new private directory."""
    ctx = SessionContext(engine_socket=SOCK, scope="x")
    first = Path(ctx.host_env()["PATH"].rsplit(":", 1)[1])
    assert (first / "balena-engine").is_file() and first.stat().st_mode & 0o077 == 0
    shutil.rmtree(first)
    second = Path(ctx.host_env()["PATH"].rsplit(":", 1)[1])
    assert second != first and (second / "balena-engine").is_file()
