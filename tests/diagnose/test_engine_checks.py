"""Engine checks against a real private dockerd: SIGKILL it twice and the check counts two
unclean restarts; a clean restart is not counted; a dead engine is reported."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from edgefleet.diagnose.engine_checks import check_container_engine, check_service_restarts
from edgefleet.diagnose.host import Host
from edgefleet.engine.starts import EngineStartRecorder, read_runs
from tests.support.dockerd import Dockerd
from tests.support.images import build, busybox_dockerfile, engine_client

pytestmark = pytest.mark.engine


def test_two_engine_sigkills_are_two_unclean_restarts(private_dockerd: Dockerd,
                                                      tmp_path: Path) -> None:
    record = tmp_path / "engine-starts.jsonl"
    recorder = EngineStartRecorder(pidfile=private_dockerd.root / "docker.pid", record=record)
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            recorder.poll()
            stop.wait(0.2)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    host = Host(root=tmp_path, run_commands=False)  # no systemd here: use the record
    try:
        stop.wait(0.5)
        assert check_container_engine(host=host, socket_path=private_dockerd.sock,
                                      record=record).success
        for _ in range(2):
            private_dockerd.kill(signal.SIGKILL)
            stop.wait(0.5)
            private_dockerd.start()
            stop.wait(0.5)
        private_dockerd.stop()  # a clean shutdown and start are not counted
        stop.wait(0.5)
        private_dockerd.start()
        stop.wait(0.8)
    finally:
        stop.set()
        thread.join()
    result = check_container_engine(host=host, socket_path=private_dockerd.sock, record=record)
    assert not result.success
    assert "2 unclean restarts and may be crashlooping (most recent start time:" in result.status
    assert [r.clean for r in read_runs(path=record)] == [False, False, True, None]
    assert check_service_restarts(socket_path=private_dockerd.sock).success
    private_dockerd.kill(signal.SIGKILL)
    dead = check_container_engine(host=host, socket_path=private_dockerd.sock, record=record)
    assert "not answering" in dead.status


def test_a_crashing_supervised_service_fails_service_restarts(private_dockerd: Dockerd,
                                                              unique: str) -> None:
    tag = f"crash-{unique}:1"
    build(tag, dockerfile=busybox_dockerfile(cmd=["sh", "-c", "exit 3"]),
          sock=private_dockerd.sock)
    with engine_client(private_dockerd.sock, timeout=30) as c:
        created = c.post("/containers/create", params={"name": f"crash-{unique}"}, json={
            "Image": tag, "Labels": {"io.balena.supervised": "true",
                                     "io.balena.service-name": "crasher"},
            "HostConfig": {"RestartPolicy": {"Name": "always"}, "NetworkMode": "none"}})
        created.raise_for_status()
        cid = created.json()["Id"]
        c.post(f"/containers/{cid}/start").raise_for_status()
        for _ in range(100):  # bounded: at most ~20 s
            if c.get(f"/containers/{cid}/json").json()["RestartCount"] >= 1:
                break
            threading.Event().wait(0.2)
    result = check_service_restarts(socket_path=private_dockerd.sock)
    assert not result.success
    assert "service crasher is restarting unexpectedly, count:" in result.status
