"""The README's "Run the server for real" set-up, run as written: nginx with the README's own
server block (its TLS, upstream and proxy settings; only addresses and certificate paths
replaced) in front of two `edgefleet server run` processes on one PostgreSQL, with a
certificate from a private CA. A real device whose config.json carries that CA as
`balenaRootCA` (base64, as balena writes it) registers over https, keeps its tunnel through
nginx's websocket upgrade (Online), runs a release pushed through the proxy, and `edgefleet
ssh` reaches it; the CLI trusts the CA through SSL_CERT_FILE."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.typing import Origin

from tests.e2e.devices import CLI, E2EDevice, running_device, wait_for
from tests.e2e.tunnel_support import Server, write_project
from tests.support.fleet import free_port
from tests.support.fleet_server import PG_URL, pg_schema_url

pytestmark = [pytest.mark.engine, pytest.mark.slow]
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_nginx() -> str:
    """The nginx server block of the README's "Run the server for real"."""
    found = re.search(r"```nginx\n(.*?)```", README.read_text(), re.S)
    assert found, "the README has no nginx example"
    return found.group(1)


def make_ca(root: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signs for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgefleet test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = root / "ca.pem", root / "cert.pem", root / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def nginx_conf(root: Path, *, port: int, upstreams: list[int], cert: Path, key: Path) -> Path:
    block = readme_nginx()
    for old, new in [
            ("server 127.0.0.1:48480; server 127.0.0.1:48481;",
             " ".join(f"server 127.0.0.1:{p};" for p in upstreams)),
            ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
            ("/etc/letsencrypt/live/fleet.example.com/fullchain.pem", str(cert)),
            ("/etc/letsencrypt/live/fleet.example.com/privkey.pem", str(key))]:
        assert old in block, f"the README's nginx example changed: no {old!r}"
        block = block.replace(old, new)
    temps = "\n".join(f"{name}_temp_path {root}/{name};"
                      for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = root / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "") +
        f"daemon off;\nworker_processes 1;\npid {root}/nginx.pid;\n"
        f"error_log {root}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log {root}/access.log;\n{temps}\n{block}\n}}\n")
    return conf


@pytest.fixture
def proxied(tmp_path: Path, registry: str) -> Iterator[tuple[Server, str, Path]]:
    """(the first server process, the https URL in front of both, the CA's PEM file)."""
    if not PG_URL:
        pytest.skip("EDGEFLEET_TEST_PG_URL is not set")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ca, cert, key = make_ca(tmp_path)
    port = free_port()
    public = f"https://127.0.0.1:{port}"
    with pg_schema_url(PG_URL) as db:
        extra = ("--database-url", db, "--public-url", public)
        a = Server(root=tmp_path / "a", registry=registry, extra=extra)
        b = Server(root=tmp_path / "b", registry=registry, extra=extra)
        (tmp_path / "nginx").mkdir()
        proc = None
        try:
            a.root.mkdir()
            a.start()
            b.root.mkdir()
            b.token = a.token
            b.start()
            conf = nginx_conf(tmp_path / "nginx", port=port, upstreams=[a.port, b.port],
                              cert=cert, key=key)
            proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path / "nginx")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            trust = ssl.create_default_context(cafile=str(ca))
            wait_for("nginx", lambda: httpx.get(f"{public}/ping", verify=trust,
                                                timeout=2).text == "OK", timeout=30)
            yield a, public, ca
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=20)
            b.stop()
            a.stop()


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[E2EDevice]:
    with running_device("tls1", tmp_path / "tls1") as d:
        yield d


def test_a_device_and_the_cli_work_through_the_readmes_nginx(
        proxied: tuple[Server, str, Path], dev: E2EDevice, tmp_path: Path) -> None:
    server, public, ca = proxied
    env = {**server.env(), "EDGEFLEET_SERVER": public, "SSL_CERT_FILE": str(ca)}

    def cli(*args: str, stdin: bytes | None = None) -> str:
        out = subprocess.run([*CLI, *args], env=env, capture_output=True, input=stdin,
                             timeout=180, check=False)
        assert out.returncode == 0, f"edgefleet {' '.join(args)}:\n{out.stdout!r}\n{out.stderr!r}"
        return out.stdout.decode()

    cli("fleet", "create", "behind-tls", "--type", "generic-amd64")
    prov = tmp_path / "provisioning.json"
    cli("device", "config", "behind-tls", "-o", str(prov), "--poll-interval", "600000")
    config = json.loads(prov.read_text())
    assert config["apiEndpoint"] == public
    config["balenaRootCA"] = base64.b64encode(ca.read_bytes()).decode()
    dev.provision(config)
    dev.start()
    uuid = wait_for("the device to register over https", lambda: dev.uuid, timeout=60)
    wait_for("the device to be Online (its tunnel through nginx)",
             lambda: server.device(uuid)["status"] == "Online", timeout=60)

    http_port = free_port()
    events = [json.loads(line) for line in cli(
        "push", "behind-tls", str(write_project(tmp_path / "proj", port=http_port)),
        "--json").splitlines() if line.strip().startswith("{")]
    assert events[-1].get("type") == "done" and events[-1]["status"] == "success", events[-5:]
    wait_for("the release to run on the device (told through the tunnel)",
             lambda: httpx.get(f"http://127.0.0.1:{http_port}/", timeout=2).text == "hello\n",
             timeout=120)
    assert cli("ssh", uuid, "--", "echo", "through nginx") == "through nginx\n"

    # release 2 through a delta, fetched over https from the private-CA server
    cli("env", "set", "BALENA_SUPERVISOR_DELTA", "1", "--fleet", "behind-tls", "--config")
    project = tmp_path / "proj"
    (project / "web" / "extra.txt").write_text("a new layer\n")
    dockerfile = project / "web" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(
        "ENV GREETING=hello", "COPY extra.txt /extra.txt\nENV GREETING=hello2"))
    cli("push", "behind-tls", str(project))
    wait_for("release 2 to run on the device (through a delta)",
             lambda: httpx.get(f"http://127.0.0.1:{http_port}/", timeout=2).text == "hello2\n",
             timeout=120)
    log = dev.log_path.read_text(errors="replace")
    assert "Applied delta for image" in log and "pulling the image instead" not in log, \
        dev.log_tail()
    assert "certificate verify failed" not in log

    # the dashboard through the proxy: a Secure session cookie, and the web terminal's
    # websocket passes the origin check on a port other than 443
    cli("user", "passwd", "admin", "--password-stdin", stdin=b"through the proxy\n")
    trust = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(base_url=public, verify=trust, timeout=30) as web:
        login = web.get("/ui/login")
        r = web.post("/ui/login", data={"username": "admin", "password": "through the proxy",
                                         "csrf": form_csrf(login.text), "next": "/ui/"})
        assert r.status_code == 303, r.text[:300]
        cookie = next(c for c in r.headers.get_list("set-cookie")
                      if c.startswith("edgefleet_session="))
        assert "secure" in [a.strip().lower() for a in cookie.split(";")[1:]], \
            f"the session cookie is Secure behind TLS: {cookie}"
        csrf = form_csrf(web.get(f"/ui/devices/{uuid}").text)
        session = web.cookies.get("edgefleet_session") or ""
    out = asyncio.run(terminal_echo(public, uuid, csrf=csrf, session=session, trust=trust))
    assert "terminal-through-nginx" in out, out


def form_csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def terminal_echo(public: str, uuid: str, *, csrf: str, session: str,
                        trust: ssl.SSLContext) -> str:
    """Open the dashboard's host terminal over wss through the proxy, type a command, and
    return what came back once its output shows (or after 20 s)."""
    url = "wss://" + public.removeprefix("https://") + f"/ui/devices/{uuid}/terminal/ws"
    seen = ""
    async with websockets.connect(f"{url}?csrf={csrf}&rows=24&cols=80", ssl=trust,
                                  origin=Origin(public),
                                  additional_headers={"Cookie": f"edgefleet_session={session}"}
                                  ) as ws:
        await ws.send(b"echo terminal-through-$((40+2))nginx; exit\n")
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            async with asyncio.timeout(20):
                while "terminal-through-42nginx" not in seen:
                    frame = await ws.recv()
                    seen += frame.decode(errors="replace") if isinstance(frame, bytes) else frame
    return seen.replace("terminal-through-42nginx", "terminal-through-nginx")



def test_one_clients_failed_logins_do_not_lock_out_the_others(
        proxied: tuple[Server, str, Path]) -> None:
    """The per-address brake on failed logins sees each client's own address through the
    proxy (clients here connect from 127.0.0.2 and 127.0.0.3), and a forged X-Forwarded-For
    does not give the guesser fresh addresses."""
    _server, public, ca = proxied
    trust = ssl.create_default_context(cafile=str(ca))

    def client(source: str) -> httpx.Client:
        return httpx.Client(base_url=public, timeout=30, transport=httpx.HTTPTransport(
            verify=trust, local_address=source))

    with client("127.0.0.2") as guesser, client("127.0.0.3") as other:
        statuses = []
        for n in range(70):  # the brake: 30 unknown keys a minute per address and process
            r = guesser.get("/api/v1/fleets", headers={
                "Authorization": f"Bearer guess-{n}", "X-Forwarded-For": f"10.9.{n}.1"})
            statuses.append(r.status_code)
        assert statuses[0] == 401 and statuses[-4:] == [429] * 4, statuses
        r = other.get("/api/v1/fleets", headers={"Authorization": "Bearer honest-mistake"})
        assert r.status_code == 401, f"another client is not locked out: {r.status_code}"
