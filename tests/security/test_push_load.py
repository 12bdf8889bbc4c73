"""Finding 2 of issue 11: one small push must not stall or fill the server. While each hostile
push is processed by a real `edgefleet server run` process, `/ping` keeps answering within 2 s,
the server's peak memory stays under RSS_LIMIT_MIB, the disk holds no more than the
configured unpacked-size cap, and the push's work directory is removed whatever the outcome."""

from __future__ import annotations

import json
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.security import hostile
from tests.security.conftest import (
    MAX_PROJECT_MIB,
    SecServer,
    add_user_and_fleet,
    push_raw,
    start_server,
    stop_server,
)
from tests.support import images

RSS_LIMIT_MIB = 300
"""Peak RSS of the server process after every push below. Measured: 95 MiB idle, 104 MiB peak
after the .dockerignore, sparse and 1 GiB gzip-bomb pushes; before issue 11 the sparse tar
alone took 2.1 GiB."""
PING_LIMIT_S = 2.0


def _during(server: SecServer, body: bytes) -> tuple[httpx.Response | BaseException, float]:
    """Push `body` and, meanwhile, time `/ping` (bounded: at most 120 s, one ping at a time).
    Returns the push's answer and the slowest ping."""
    result: list[httpx.Response | BaseException] = []

    def run() -> None:
        try:
            result.append(push_raw(server, body, timeout=120))
        except BaseException as exc:
            result.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    slowest = 0.0
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=server.url, timeout=PING_LIMIT_S * 5) as c:
        while worker.is_alive() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                c.get("/ping")
                took = time.monotonic() - t0
            except httpx.TimeoutException:
                took = PING_LIMIT_S * 5
            slowest = max(slowest, took)
            time.sleep(0.05)
    worker.join(timeout=1)
    assert result, "the push did not end within 120 s"
    return result[0], slowest


def _events(r: httpx.Response) -> list[dict[str, object]]:
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def _check_after(server: SecServer) -> None:
    assert server.outside_data_dir() == server.baseline
    assert server.push_workdirs() == []
    assert server.rss_kib() < RSS_LIMIT_MIB * 1024, f"peak RSS {server.rss_kib()} KiB"


def test_backtracking_dockerignore_does_not_block_the_loop(secserver: SecServer) -> None:
    r, slowest = _during(secserver, hostile.backtracking_dockerignore(stars=10))
    assert isinstance(r, httpx.Response), r
    assert slowest < PING_LIMIT_S, f"/ping took {slowest:.1f} s"
    # the matcher answers quickly; the engine then refuses the Dockerfile
    done = _events(r)[-1]
    assert done["type"] == "done" and done["status"] == "failed", done
    _check_after(secserver)


def test_sparse_member_is_refused(secserver: SecServer) -> None:
    r, slowest = _during(secserver, hostile.sparse_tar(realsize=2**30))
    assert isinstance(r, httpx.Response), r
    assert r.status_code == 400, r.text[:300]
    assert "big.bin" in r.json()["detail"] and "sparse" in r.json()["detail"]
    assert slowest < PING_LIMIT_S, f"/ping took {slowest:.1f} s"
    _check_after(secserver)


@pytest.mark.parametrize("members", [MAX_PROJECT_MIB * 4, 1024])
def test_gzip_bomb_stops_at_the_unpacked_cap(secserver: SecServer, members: int) -> None:
    body = hostile.gzip_bomb(members=members)
    assert len(body) < 2 * 2**20  # ~1 KB per unpacked MiB
    r, slowest = _during(secserver, body)
    assert isinstance(r, httpx.Response), r
    assert r.status_code == 413, r.text[:300]
    assert f"{MAX_PROJECT_MIB} MiB" in r.json()["detail"]
    assert slowest < PING_LIMIT_S, f"/ping took {slowest:.1f} s"
    _check_after(secserver)


def test_a_build_that_never_ends_is_stopped(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`--build-timeout`: the release fails, the work directory goes, the server answers."""
    server = start_server(tmp_path_factory.mktemp("secbox"), "--build-timeout", "3")
    try:
        add_user_and_fleet(server)
        body = hostile.tar_of([("Dockerfile", b'FROM scratch\nCOPY busybox /bin/busybox\n'
                                b'RUN ["/bin/busybox", "sleep", "600"]\n', tarfile.REGTYPE, ""),
                               ("busybox", Path(images.BUSYBOX).read_bytes(),
                                tarfile.REGTYPE, "")], with_dockerfile=False)
        r, slowest = _during(server, body)
        assert isinstance(r, httpx.Response), r
        done = _events(r)[-1]
        assert done["status"] == "failed" and "longer than 3 s" in str(done["error"]), done
        assert slowest < PING_LIMIT_S
        assert server.push_workdirs() == []
    finally:
        stop_server(server)
