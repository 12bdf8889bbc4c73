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
