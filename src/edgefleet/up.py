"""`edgefleet up`: the whole system on one machine. A fleet server (SQLite) with its registry,
a fleet, a device supervisor on the local engine provisioned into it, and the example
two-service release pushed to it. Each part is the real program in its own process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgefleet.client import Login, config_path, load_login, save_login
from edgefleet.model.config import save_config

BUSYBOX = Path("/bin/busybox")
CLI = [sys.executable, "-m", "edgefleet"]


class UpError(RuntimeError):
    """`edgefleet up` could not bring a part up; the message says which and where to look."""


@dataclass(frozen=True)
class UpOptions:
    """What `edgefleet up` was asked for."""

    data_dir: Path
    example: Path
    fleet: str = "example"
    device_type: str = "generic-amd64"
    port: int = 48480
    registry_port: int = 48490
    api_port: int = 48484
    """The local device's supervisor API port (`listenPort` of its config.json)."""
    engine_socket: str = "/var/run/docker.sock"
    scope: str = "up"
    poll_interval_ms: int = 10_000
    device_name: str = "up-device"
    """What the local device is called in the fleet (so printed commands need no uuid)."""


@dataclass
class Up:
    """The processes `edgefleet up` started, and how to reach them."""

    options: UpOptions
    say: Callable[[str], None] = print
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.options.port}"

    @property
    def token_file(self) -> Path:
        return self.options.data_dir / "admin.token"

    @property
    def device_dir(self) -> Path:
        return self.options.data_dir / "device"

    @property
    def config_path(self) -> Path:
        return self.device_dir / "config.json"

    # --- processes -------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start `edgefleet ARGS` in its own session, output to `<data-dir>/<name>.log`."""
        log_path = self.options.data_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen([*CLI, *args], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((name, proc, log_path))
        return proc

    def check_alive(self) -> None:
        """Raise UpError with the tail of its log when a started process has exited."""
        for name, proc, log_path in self.procs:
            if proc.poll() is not None:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                raise UpError(f"the {name} exited (code {proc.returncode}); {log_path}:\n{tail}")

    def _wait(self, what: str, check: Callable[[], Any], *, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                result = check()
            except (httpx.HTTPError, OSError, ValueError):
                result = None
            if result:
                return result
            time.sleep(0.5)
        raise UpError(f"timed out after {timeout:.0f}s waiting for {what}")

    def stop(self) -> None:
        """Stop the device first, then the server (and its registry); a second Ctrl-C or
        SIGTERM meanwhile does not leave them running."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
        for _name, proc, _log in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.procs.clear()

    # --- steps -----------------------------------------------------------------------------
    def check_ports(self) -> None:
        """Refuse to start when a port `up` needs is taken, before starting anything."""
        o = self.options
        for what, port in (("fleet server", o.port), ("registry", o.registry_port),
                           ("device's supervisor API", o.api_port)):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError as exc:
                    flag = {"fleet server": "--port", "registry": "--registry-port"}.get(
                        what, "--api-port")
                    raise UpError(f"port {port} for the {what} is taken ({exc.strerror}):"
                                  " another `edgefleet up` may be running; stop it, or pass"
                                  f" {flag}") from None

    def start_server(self) -> str:
        """Start the fleet server (its own docker-registry beside it); returns the token."""
        o = self.options
        self.say(f"[up] starting the fleet server on {self.url} (data in {o.data_dir / 'server'})")
        self._spawn("server", ["server", "run", "--data-dir", str(o.data_dir / "server"),
                               "--port", str(o.port), "--registry-port", str(o.registry_port),
                               "--engine-socket", o.engine_socket,
                               "--admin-token-file", str(self.token_file)])
        self._wait("the fleet server to answer /ping",
                   lambda: httpx.get(f"{self.url}/ping", timeout=2).text == "OK", timeout=60)
        if not self.token_file.exists():
            raise UpError(f"{self.token_file} is missing: the server in {o.data_dir / 'server'}"
                          " was set up by something else; remove that directory to start over")
        return self.token_file.read_text().strip()

    def user(self, token: str) -> httpx.Client:
        """A client of the server's user API."""
        return httpx.Client(base_url=f"{self.url}/api/v1", timeout=60,
                            headers={"Authorization": f"Bearer {token}"})

    def ensure_fleet(self, token: str) -> None:
        """Create the fleet unless it exists."""
        o = self.options
        with self.user(token) as c:
            if c.get(f"/fleets/{o.fleet}").status_code == 404:
                c.post("/fleets", json={"name": o.fleet, "device_type": o.device_type}
                       ).raise_for_status()
                # the server then knows how soon devices see a change (`env set` says so)
                c.put("/variables", json={
                    "kind": "config", "fleet": o.fleet, "name": "BALENA_SUPERVISOR_POLL_INTERVAL",
                    "value": str(o.poll_interval_ms)}).raise_for_status()
                self.say(f"[up] created fleet '{o.fleet}' ({o.device_type})")

    def ensure_device_config(self, token: str) -> None:
        """A provisioning config.json for the local device (once; it registers itself)."""
        if self.config_path.exists():
            config = json.loads(self.config_path.read_text())
            if config.get("listenPort") != self.options.api_port:
                save_config(path=self.config_path,
                            config={**config, "listenPort": self.options.api_port})
            return
        with self.user(token) as c:
            r = c.post(f"/fleets/{self.options.fleet}/config",
                       json={"poll_interval_ms": self.options.poll_interval_ms})
            r.raise_for_status()
            config = {**r.json(), "listenPort": self.options.api_port}
        self.device_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")
        self.config_path.chmod(0o600)
        self.say(f"[up] wrote a provisioning config.json: {self.config_path}")

    def start_device(self) -> str:
        """Start the local supervisor and wait until it has registered; returns its uuid."""
        o = self.options
        self.say(f"[up] starting a device supervisor on {o.engine_socket} (scope '{o.scope}')")
        self._spawn("supervisor", ["supervisor", "run", "--config", str(self.config_path),
                                   "--data-dir", str(self.device_dir / "data"),
                                   "--engine-socket", o.engine_socket, "--scope", o.scope])
        config = self._wait("the device to register",
                            lambda: (c := json.loads(self.config_path.read_text())).get(
                                "deviceApiKey") and c, timeout=60)
        return str(config["uuid"])

    def has_release(self, token: str) -> bool:
        """Whether the fleet has a successful release already (then nothing is pushed)."""
        with self.user(token) as c:
            r = c.get(f"/fleets/{self.options.fleet}/releases")
            r.raise_for_status()
            return any(rel.get("status") == "success" for rel in r.json())

    @property
    def project(self) -> Path:
        """The example project as pushed (with busybox in each build context): edit it and
        push it again."""
        return self.options.data_dir / "example"

    def push_example(self) -> None:
        """Push the example project (with the host's static busybox in each build context)."""
        if not BUSYBOX.exists():
            raise UpError(f"{BUSYBOX} is missing: install Debian's busybox-static")
        if not self.project.exists():
            shutil.copytree(self.options.example, self.project)
            for dockerfile in self.project.rglob("Dockerfile*"):
                shutil.copy2(BUSYBOX, dockerfile.parent / "busybox")
        self.say(f"[up] pushing {self.project} to fleet '{self.options.fleet}'")
        done = subprocess.run([*CLI, "push", self.options.fleet, str(self.project)],
                              env=self.cli_env(), check=False)
        if done.returncode != 0:
            raise UpError(f"edgefleet push failed (exit code {done.returncode})")

    def ensure_login(self, token: str) -> bool:
        """Log the local CLI in to this server, unless it is logged in elsewhere (or through
        EDGEFLEET_SERVER); True when the CLI talks to this server."""
        current = load_login()
        if current is not None and current.url != self.url:
            return False
        if current is None or current.token != token:
            save_login(Login(url=self.url, token=token))
            self.say(f"[up] logged the edgefleet CLI in to {self.url} ({config_path()})")
        return True

    def name_device(self, token: str, uuid: str) -> None:
        """Give a newly registered device its name (a renamed one keeps the user's)."""
        with self.user(token) as c:
            device = c.get(f"/devices/{uuid}").json()
            if device.get("name") == uuid[:7]:
                c.patch(f"/devices/{uuid}", json={"name": self.options.device_name}
                        ).raise_for_status()

    def cli_env(self) -> dict[str, str]:
        """Environment for `edgefleet` client commands against this server."""
        return {**os.environ, "EDGEFLEET_SERVER": self.url,
                "EDGEFLEET_TOKEN": self.token_file.read_text().strip()}

    def wait_running(self, token: str, uuid: str, *, timeout: float = 300) -> dict[str, Any]:
        """Wait until the server sees the device done on its release; the device's view."""
        def done() -> dict[str, Any] | None:
            with self.user(token) as c:
                device = dict(c.get(f"/devices/{uuid}").json())
            ok = device.get("update_status") == "done" and device.get("running_release")
            return device if ok else None

        self.say("[up] waiting for the device to download and start the release")
        return dict(self._wait("the device to run the release", done, timeout=timeout))


def next_commands(*, up: Up, device: str, logged_in: bool) -> list[str]:
    """The commands `up` prints for a user to try next, each runnable exactly as printed (the
    README's quick start is these lines)."""
    o = up.options
    lines = ["curl http://127.0.0.1:8080/"]
    if shutil.which("edgefleet") is None:
        lines.insert(0, f"export PATH={Path(sys.executable).parent}:$PATH")
    if not logged_in:
        lines.append(f"edgefleet login --url {up.url} --token $(cat {up.token_file})")
    lines += ["edgefleet device list", f"edgefleet logs {device}",
              f"edgefleet env set GREETING hello --fleet {o.fleet}",
              f"edgefleet push {o.fleet} {up.project}", "edgefleet supervisor status"]
    return lines


def _stop_on_sigterm() -> None:
    """SIGTERM and SIGHUP (`kill`, a service manager, a closed terminal) stop `up` the way
    Ctrl-C does: the device, then the server."""
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, interrupt)


def reset(*, options: UpOptions, say: Callable[[str], None] = print) -> None:
    """Start over: remove what an earlier `up` left (its data dir, and its device's
    containers, volumes and networks on the engine). Refused while that `up` runs."""
    try:
        running = httpx.get(f"http://127.0.0.1:{options.port}/ping", timeout=2).text == "OK"
    except httpx.HTTPError:
        running = False
    if running:
        raise UpError(f"a fleet server answers on port {options.port}: stop the running"
                      " `edgefleet up` first (Ctrl-C in its terminal), then --reset")
    flt = {"filters": json.dumps({"label": [f"io.edgefleet.scope={options.scope}"]})}
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=options.engine_socket),
                          base_url="http://docker", timeout=60) as c:
            for ctr in c.get("/containers/json", params={"all": "1", **flt}).json():
                c.delete(f"/containers/{ctr['Id']}", params={"force": "1"})
            for vol in c.get("/volumes", params=flt).json().get("Volumes") or []:
                c.delete(f"/volumes/{vol['Name']}")
            for net in c.get("/networks", params=flt).json():
                c.delete(f"/networks/{net['Id']}")
    except (httpx.HTTPError, OSError) as exc:
        raise UpError(f"cannot reach the engine at {options.engine_socket} ({exc}): start"
                      " dockerd (./scripts/setup does), or pass --engine-socket") from None
    if options.data_dir.exists():
        shutil.rmtree(options.data_dir)
    say(f"[up] reset: removed {options.data_dir} and the '{options.scope}' device's"
        " containers, volumes and networks")


def run_up(*, options: UpOptions, say: Callable[[str], None] = print,
           wait: bool = True) -> Up:
    """Bring everything up, print where to look, and (with `wait`) stay until interrupted
    (Ctrl-C, SIGTERM or SIGHUP), then stop what it started."""
    options.data_dir.mkdir(parents=True, exist_ok=True)
    up = Up(options=options, say=say)
    _stop_on_sigterm()
    try:
        up.check_ports()
        token = up.start_server()
        logged_in = up.ensure_login(token)
        up.ensure_fleet(token)
        fresh = not up.config_path.exists()
        up.ensure_device_config(token)
        uuid = up.start_device()
        say(f"[up] device {uuid} registered")
        if fresh:
            up.name_device(token, uuid)
        if not up.has_release(token):
            up.push_example()
        device = up.wait_running(token, uuid)
        say(f"[up] device {uuid[:7]} runs release {str(device['running_release'])[:7]}")
        say("")
        say(f"  fleet server  {up.url}   (admin token in {up.token_file})")
        say(f"  device        {device.get('name') or uuid[:7]} ({uuid[:7]}), data in"
            f" {up.device_dir}; logs: {options.data_dir}/*.log")
        say(f"                supervisor API: http://127.0.0.1:{options.api_port}/ping")
        say("  the app       the example's frontend on :8080, its backend on"
            " 127.0.0.1:1234/cgi-bin/data")
        say(f"  dashboard     {up.url}/ui/  (user admin; set its password first:"
            " edgefleet user passwd)")
        if not logged_in:
            other = load_login()
            say(f"  note          the CLI stays logged in to {other.url if other else '?'};"
                " the login line below switches it to this server")
        say("")
        say("  try, in another shell:")
        for line in next_commands(up=up, device=str(device.get("name") or uuid[:7]),
                                  logged_in=logged_in):
            say(f"  $ {line}")
        say("")
        if wait:
            say("[up] running; Ctrl-C (or SIGTERM) stops the device and the server")
            while True:
                up.check_alive()
                time.sleep(1)
    except BaseException:
        up.stop()
        raise
    return up
