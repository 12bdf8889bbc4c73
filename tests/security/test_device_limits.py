"""Issue 11, finding 8 (device side): the supervisor API caps request bodies and JSON depth
and answers malformed bodies with a 4xx, never a 500; the device store, config.json and
config.json.backup (the device key is in them) are created 0600. Against a real
`edgefleet supervisor run` process in local mode."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgefleet.model.config import save_config
from tests.device.api.test_runtime import start_supervisor
from tests.device.conftest import cleanup_scope

pytestmark = pytest.mark.engine
DEEP = 100_000


@pytest.fixture
def supervisor(tmp_path: Path, unique: str) -> Iterator[tuple[str, Path]]:
    scope = f"lim{unique}"
    proc, port, lines = start_supervisor(
        tmp_path, scope, {"deviceType": "generic-amd64", "localMode": True},
        "--api-host", "127.0.0.1", "--reboot-command", "true", "--shutdown-command", "true")
    try:
        yield f"http://127.0.0.1:{port}", tmp_path
        assert proc.poll() is None, "the supervisor survived: " + "".join(lines[-20:])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cleanup_scope(scope)


def _chunks(total: int) -> Iterator[bytes]:
    """A JSON body of exactly `total` bytes, sent 64 KiB at a time."""
    head, tail = b'{"local": {"name": "', b'"}}'
    yield head
    left = total - len(head) - len(tail)
    while left > 0:
        yield b"x" * min(left, 65536)
        left -= 65536
    yield tail


BAD_BODIES: dict[str, tuple[str, str, bytes]] = {
    "deep-target": ("POST", "/v2/local/target-state",
                    b'{"local": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
    "deep-objects": ("POST", "/v2/local/target-state",
                     b'{"local": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}"),
    "huge-int": ("POST", "/v2/local/target-state",
                 b'{"local": {"name": "x", "apps": {"1": {"id": ' + b"9" * 5000 + b"}}}}"),
    "not-json": ("POST", "/v2/local/target-state", b'{"local": '),
    "not-utf8": ("POST", "/v2/local/target-state", b'{"local": "\xff\xfe"}'),
    "wrong-shapes": ("POST", "/v2/local/target-state",
                     b'{"local": {"apps": {"web": [1, 2]}, "config": 7, "name": []}}'),
    "deep-host-config": ("PATCH", "/v1/device/host-config",
                         b'{"network": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
    "deep-restart": ("POST", "/v1/restart", b"[" * DEEP + b"]" * DEEP),
    "huge-int-app": ("POST", "/v1/restart", b'{"appId": ' + b"7" * 5000 + b"}"),
}


def test_malformed_bodies_get_a_4xx_and_the_supervisor_keeps_serving(
        supervisor: tuple[str, Path]) -> None:
    url, _ = supervisor
    for name, (method, path, body) in BAD_BODIES.items():
        r = httpx.request(method, url + path, content=body, timeout=30,
                          headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
        assert r.json()["status"] == "failed", name
    assert httpx.get(f"{url}/ping").text == "OK"


def test_oversized_bodies_are_refused_with_413_before_they_are_read(
        supervisor: tuple[str, Path]) -> None:
    url, _ = supervisor
    big = 64 << 20
    r = httpx.post(f"{url}/v2/local/target-state", timeout=60,
                   headers={"Content-Type": "application/json", "Content-Length": str(big)},
                   content=_chunks(big))
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert "bytes" in r.json()["message"]
    r = httpx.post(f"{url}/v2/local/target-state", timeout=60, content=_chunks(big),
                   headers={"Content-Type": "application/json"})  # chunked: no length given
    assert r.status_code == 413, (r.status_code, r.text[:300])
    r = httpx.patch(f"{url}/v1/device/host-config", timeout=30,
                    json={"network": {"hostname": "h", "pad": "x" * (2 << 20)}})
    assert r.status_code == 413, (r.status_code, r.text[:300])
    r = httpx.post(f"{url}/v2/local/target-state", timeout=30,
                   json={"local": {"name": "ok", "config": {}, "apps": {}}})
    assert r.status_code == 200, r.text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_and_config_files_are_0600(supervisor: tuple[str, Path]) -> None:
    _, tmp = supervisor
    store = tmp / "data" / "edgefleet.sqlite"
    for path in [store, *(p for p in store.parent.iterdir()
                          if p.name.startswith("edgefleet.sqlite"))]:
        assert _mode(path) == 0o600, (path, oct(_mode(path)))
    cfg = tmp / "cfg" / "config.json"
    cfg.parent.mkdir()
    old = os.umask(0o022)
    try:
        save_config(path=cfg, config={"uuid": "u", "deviceApiKey": "k" * 32})
        assert _mode(cfg) == 0o600
        os.chmod(cfg, 0o644)  # an older file, written before this fix
        save_config(path=cfg, config={"uuid": "u", "deviceApiKey": "j" * 32})
    finally:
        os.umask(old)
    assert _mode(cfg) == 0o600 and _mode(cfg.with_name("config.json.backup")) == 0o600
    assert json.loads(cfg.read_text())["deviceApiKey"] == "j" * 32
