"""Start extra dockerd instances ("devices") with their own data-root, exec-root, pidfile,
socket and address pool, for tests that need an engine of their own (kill it, fill its disk,
preload into it, run several devices)."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

_INDEX_DIR = Path("/tmp/edgefleet-dockerd-index")


def _claim_index() -> tuple[int, int]:
    """An index (bridge efbrN, address pools 172.30/31.N) no other test process holds: each
    index is an flock'd file, held until the dockerd is cleaned up (or its process dies)."""
    _INDEX_DIR.mkdir(exist_ok=True)
    start = os.getpid() % 200
    for step in range(200):
        index = (start + step) % 200 + 20
        fd = os.open(_INDEX_DIR / str(index), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return index, fd
    raise RuntimeError("no free private-dockerd index (200 in use)")


@dataclass
class Dockerd:
    """A running (or stopped) private dockerd. `sock` is its API socket path."""

    root: Path
    index: int
    data_root: Path
    extra_args: tuple[str, ...] = ()
    index_fd: int = -1
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "dockerd.log"

    @property
    def sock(self) -> str:
        return str(self.root / "docker.sock")

    @property
    def bridge(self) -> str:
        return f"efbr{self.index}"

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self, *, timeout: float = 60) -> None:
        """Start dockerd and wait until it answers `/_ping`."""
        exec_root = self.root / "exec"
        exec_root.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        # Its own default bridge and a private /24 pool per instance (never used for traffic
        # beyond this machine), and no iptables, so instances never fight over host
        # networking. Never `--bridge=none`: dockerd then deletes the host's docker0.
        pool = f"base=172.31.{self.index}.0/24,size=28"
        if not any(self.data_root.iterdir()):  # a new engine: bridges in its pool are leftovers
            _drop_network_bridges(f"172.31.{self.index}.0/24")
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=False,
                       capture_output=True)
        subprocess.run(["ip", "addr", "replace", f"172.30.{self.index}.1/24", "dev",
                        self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        args = [
            "dockerd",
            f"--data-root={self.data_root}",
            f"--exec-root={exec_root}",
            f"--pidfile={self.root / 'docker.pid'}",
            f"--host=unix://{self.sock}",
            f"--bridge={self.bridge}",
            "--iptables=false",
            "--ip-masq=false",
            f"--default-address-pool={pool}",
            "--storage-driver=overlay2",
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        host_bridge = _bridge_addresses("docker0")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        self.wait_ready(timeout=timeout)
        # dockerd 20.10 restarting after SIGKILL clears its "stale" default bridge and deletes
        # the host's docker0 while doing so (seen here); give the host engine its bridge back.
        if host_bridge and not _bridge_addresses("docker0"):
            _restore_bridge("docker0", host_bridge)

    def wait_ready(self, *, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log_path.read_text()[-2000:]}")
            try:
                with httpx.Client(transport=httpx.HTTPTransport(uds=self.sock), timeout=2) as c:
                    if c.get("http://docker/_ping").text == "OK":
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"dockerd did not answer within {timeout}s: {self.log_path}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the engine (SIGKILL by default, as seed 000 §2.1 does) and wait for it to go.

        SIGKILL goes to the whole process group, dockerd and its containerd, the way a
        single-binary engine (balenaEngine) dies; container shims survive, as they do there."""
        if self.proc is not None and self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, sig)
                # dockerd's containerd runs in a process group of its own
                subprocess.run(["pkill", "-KILL", "-f",
                                f"containerd --config {self.root / 'exec'}/"], check=False)
                # this sandbox's init may not reap it: a zombie's pid in the pidfile would make
                # the next dockerd wait for a containerd that never answers
                (self.root / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)
            else:
                self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def remove_containers(self) -> None:
        """Force-remove every container (teardown of an engine nobody reuses): dockerd's own
        shutdown would give each running one its full grace period (10 s by default)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=self.sock),
                              base_url="http://docker", timeout=30) as c:
                for ctr in c.get("/containers/json", params={"all": "1"}).json():
                    c.delete(f"/containers/{ctr['Id']}", params={"force": "1"})
        except httpx.HTTPError:
            pass

    def stop(self) -> None:
        """Stop dockerd cleanly (SIGTERM), killing containers it leaves behind."""
        self.kill(signal.SIGTERM)

    def cleanup(self) -> None:
        """Stop it, unmount anything left under its roots, and delete its files."""
        self.stop()
        for base in (self.root / "exec", self.data_root):
            subprocess.run(
                ["sh", "-c", f"grep ' {base}' /proc/mounts | cut -d' ' -f2 | sort -r | "
                 "xargs -r -n1 umount -l"],
                check=False,
            )
        # shims of tasks the engine lost track of (it died while starting them) outlive it
        subprocess.run(["pkill", "-KILL", "-f", f"containerd-shim.* -address {self.root}/exec/"],
                       check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
        _drop_network_bridges(f"172.31.{self.index}.0/24")
        if self.index_fd >= 0:
            os.close(self.index_fd)  # releases the index's flock
            self.index_fd = -1


def _drop_network_bridges(pool: str) -> None:
    """Delete the bridges of user networks in `pool` (this index's, held by its flock): an
    engine killed or stopped with networks left leaves their br-* bridges and routes on the
    host, and a later engine of the same index then finds no free address pool ("could not
    find an available, non-overlapping IPv4 address pool": seen to fail test_up once 386 had
    piled up)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "type", "bridge"],
                         capture_output=True, text=True, check=False).stdout
    mine = ipaddress.IPv4Network(pool)
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1].startswith("br-") and \
                ipaddress.IPv4Interface(fields[3]).network.subnet_of(mine):
            subprocess.run(["ip", "link", "del", fields[1]], check=False, capture_output=True)


def _bridge_addresses(name: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", name], capture_output=True,
                         text=True)
    if out.returncode != 0:
        return []
    return [line.split()[3] for line in out.stdout.splitlines()] or ["present"]


def _restore_bridge(name: str, addresses: list[str]) -> None:
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=False)
    for addr in addresses:
        if addr != "present":
            subprocess.run(["ip", "addr", "add", addr, "dev", name], check=False)
    subprocess.run(["ip", "link", "set", name, "up"], check=False)


def new_dockerd(*, data_root: Path | None = None, extra_args: tuple[str, ...] = (),
                base: str | None = None) -> Dockerd:
    """Make (not start) a private dockerd under a fresh temp dir. Short paths: unix sockets
    have a 108-byte limit."""
    index, fd = _claim_index()
    root = Path(tempfile.mkdtemp(prefix="efd", dir=base or "/tmp"))
    return Dockerd(root=root, index=index, data_root=data_root or root / "data",
                   extra_args=extra_args, index_fd=fd)
