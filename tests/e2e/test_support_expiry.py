"""Issue 15 end to end: a support agent's real `edgefleet ssh` session through a device's
tunnel is cut when the grant expires (the server's record of its end is within 5 s of the
expiry), and new sessions are refused; before expiry, the agent reads logs but may not
write variables, and may not reboot without a grant allowing it."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from tests.e2e.devices import CLI, E2EDevice, wait_for
from tests.e2e.tunnel_support import Server, provision

pytestmark = [pytest.mark.engine, pytest.mark.slow]
GRANT_S = 12
"""Long enough to start the session and check the rules, short enough to wait out."""



def test_support_session_ends_with_the_grant(server: Server, device: E2EDevice) -> None:
    server.cli("fleet", "create", "kiosks", "--type", "generic-amd64")
    provision(server, device, fleet="kiosks", poll_ms=600_000)
    device.start()
    uuid = wait_for("the device to register", lambda: device.uuid, timeout=60)
    wait_for("the device to be Online", lambda: server.device(uuid)["status"] == "Online",
             timeout=60)
    carol = server.cli("user", "create", "carol", "--support").strip()
    env = {**server.env(), "EDGEFLEET_TOKEN": carol}

    def as_carol(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*CLI, *args], env=env, capture_output=True, timeout=timeout,
                              check=False)

    refused = as_carol("ssh", uuid, "--", "id")
    assert refused.returncode == 1 and b"no device" in refused.stdout + refused.stderr

    grant = json.loads(server.cli("support", "grant", uuid, "--for", f"{GRANT_S}s", "--json"))
    expires_ms = grant["expires_ms"]
    session = subprocess.Popen(
        [*CLI, "ssh", uuid, "--", "while true; do echo tick; sleep 0.3; done"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert session.stdout is not None
        first = session.stdout.readline()  # the session runs on the device
        assert first == b"tick\n", session.communicate(timeout=30)
        # before expiry: logs yes, variables and reboot no
        assert as_carol("logs", uuid).returncode == 0
        out = as_carol("env", "set", "DB_PASSWORD", "x", "--device", uuid)
        assert out.returncode == 1 and b"403" in out.stdout + out.stderr, out
        out = as_carol("device", "reboot", uuid, "--yes", "--note", "hung")
        assert out.returncode == 1 and b"403" in out.stdout + out.stderr, out
        assert time.time() * 1000 < expires_ms, "the checks took longer than the grant"
        _, err = session.communicate(timeout=GRANT_S + 30)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert session.returncode != 0 and b"access to this device ended" in err, err

    after = as_carol("ssh", uuid, "--", "id")
    assert after.returncode == 1 and b"no device" in after.stdout + after.stderr

    rows = httpx.get(f"{server.url}/api/v1/audit", params={"device": uuid, "actor": "carol"},
                     headers={"Authorization": f"Bearer {server.token}"}, timeout=30).json()
    cut = [r for r in rows if r["action"] == "remote.command" and r["outcome"] == "cut"]
    assert cut and cut[0]["result"].startswith("cut: access to this device ended"), rows
    late_ms = cut[0]["ended_ms"] - expires_ms
    print(f"session ended {late_ms} ms after the grant expired")
    assert 0 <= late_ms <= 5000, late_ms
    assert {("variable.write", "denied"), ("device.reboot", "denied")} <= {
        (r["action"], r["outcome"]) for r in rows}
