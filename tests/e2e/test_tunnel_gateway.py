"""Reaching a device through a gateway device on its LAN (seed 000 §4): two devices in network
namespaces on a LAN veth pair made here; only the gateway reaches the server."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.devices import CLI, wait_for
from tests.e2e.tunnel_support import Server
from tests.support.dockerd import Dockerd, new_dockerd
from tests.support.fleet import free_port

pytestmark = [pytest.mark.engine, pytest.mark.slow]
N = 100 + os.getpid() % 100


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def lan() -> Iterator[dict[str, str]]:
    """Namespaces gw and tg: host <-> gw (10.201.N.0/24), gw <-> tg (10.202.N.0/24)."""
    gw, tg = f"efgw{N}", f"eftg{N}"
    names = {"gw": gw, "tg": tg, "host_ip": f"10.201.{N}.1", "gw_ip": f"10.201.{N}.2",
             "lan_gw": f"10.202.{N}.1", "lan_tg": f"10.202.{N}.2", "tg_if": f"lt{N}"}
    for ns in (gw, tg):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    subprocess.run(["ip", "link", "del", f"vh{N}"], capture_output=True, check=False)
    sh("ip", "link", "add", f"vh{N}", "type", "veth", "peer", "name", f"vg{N}")
    sh("ip", "link", "set", f"vg{N}", "netns", gw)
    sh("ip", "addr", "add", f"{names['host_ip']}/24", "dev", f"vh{N}")
    sh("ip", "link", "set", f"vh{N}", "up")
    sh("ip", "-n", gw, "addr", "add", f"{names['gw_ip']}/24", "dev", f"vg{N}")
    sh("ip", "-n", gw, "link", "set", f"vg{N}", "up")
    sh("ip", "-n", gw, "link", "add", f"lg{N}", "type", "veth", "peer", "name", f"lt{N}")
    sh("ip", "-n", gw, "link", "set", f"lt{N}", "netns", tg)
    sh("ip", "-n", gw, "addr", "add", f"{names['lan_gw']}/24", "dev", f"lg{N}")
    sh("ip", "-n", gw, "link", "set", f"lg{N}", "up")
    sh("ip", "-n", tg, "addr", "add", f"{names['lan_tg']}/24", "dev", f"lt{N}")
    sh("ip", "-n", tg, "link", "set", f"lt{N}", "up")
    try:
        yield names
    finally:
        for ns in (gw, tg):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", f"vh{N}"], capture_output=True, check=False)


@pytest.fixture
def engines() -> Iterator[list[Dockerd]]:
    pair = [new_dockerd(), new_dockerd()]
    try:
        for d in pair:
            d.start()
        yield pair
    finally:
        for d in pair:
            d.cleanup()


def supervisor(root: Path, engine: Dockerd, ns: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *CLI, "supervisor", "run", "--config",
         str(root / "config.json"), "--data-dir", str(root / "data"), "--engine-socket",
         engine.sock, "--scope", "gwtest", "--engine-pidfile", str(engine.root / "docker.pid")],
        stdout=open(root / "supervisor.log", "ab"), stderr=subprocess.STDOUT,
        env={**os.environ, **env})


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_device_behind_a_gateway(tmp_path: Path, registry: str, lan: dict[str, str],
                                   engines: list[Dockerd]) -> None:
    server = Server(root=tmp_path, registry=registry, host="0.0.0.0")
    server.start()
    procs: list[subprocess.Popen[bytes] | None] = []
    roots = {name: tmp_path / name for name in ("gateway", "target")}
    try:
        server.cli("fleet", "create", "lan", "--type", "generic-amd64")
        endpoint = f"http://{lan['host_ip']}:{server.port}"
        for root in roots.values():
            root.mkdir()
            prov = root / "provisioning.json"
            server.cli("device", "config", "lan", "-o", str(prov), "--poll-interval", "600000")
            doc = json.loads(prov.read_text())
            (root / "config.json").write_text(json.dumps(
                {**doc, "apiEndpoint": endpoint, "listenPort": free_port()}))
        # the target first joins from the gateway's network (it registers and reports its
        # supervisor API key), then moves behind the gateway, where the server is unreachable
        first = supervisor(roots["target"], engines[1], lan["gw"])
        procs.append(first)
        target = wait_for("the target to register",
                          lambda: json.loads((roots["target"] / "config.json").read_text())
                          .get("uuid"), timeout=60)
        # (its API key is never shown to users: the api_port of the same report is)
        wait_for("the target's report", lambda: server.device(target)["reported"]
                 .get("api_port"), timeout=60)
        stop(first)
        # the target listens on its LAN when its config.json says so (device configuration)
        config = json.loads((roots["target"] / "config.json").read_text())
        (roots["target"] / "config.json").write_text(json.dumps(
            {**config, "lanTunnelPort": 22222}))
        procs.append(supervisor(roots["gateway"], engines[0], lan["gw"]))
        procs.append(supervisor(roots["target"], engines[1], lan["tg"]))
        gateway = wait_for("the gateway to register",
                           lambda: json.loads((roots["gateway"] / "config.json").read_text())
                           .get("uuid"), timeout=60)
        wait_for("the gateway's tunnel", lambda: server.device(gateway)["status"] == "Online",
                 timeout=60)
        assert server.run("ssh", target, "--", "true").returncode == 1, \
            "the target itself has no tunnel"
        got = wait_for("a session through the gateway", lambda: (o := server.run(
            "ssh", target, "--via", gateway, "--ip", lan["lan_tg"], "--",
            "cat /proc/net/dev; exit 9")).returncode == 9 and o, timeout=30)
        assert lan["tg_if"].encode() in got.stdout, "the command ran in the target's network"
        out = server.run("ssh", target, "--via", gateway, "--ip", lan["lan_gw"], "--", "true")
        assert out.returncode == 1 and b"cannot connect to" in out.stderr, out
        audit = server.cli("audit", "--device", target, "--json")
        assert f"host via {gateway}" in audit
    except BaseException:
        for name, root in roots.items():
            log = root / "supervisor.log"
            if log.exists():
                print(f"--- {name} ---\n" + log.read_text(errors="replace")[-2500:])
        print(server.log.read_text(errors="replace")[-2000:])
        raise
    finally:
        for p in procs:
            stop(p)
        server.stop()
