"""Who holds a TCP port: the listening socket in /proc/net/tcp{,6} and the process with that
socket open, so "cannot listen" can name what to stop."""

from __future__ import annotations

import os
from pathlib import Path

LISTEN = "0A"
MAX_PROCESSES = 5000
"""Bound on the /proc scan (a device runs far fewer processes)."""


def listening_inodes(*, port: int, proc: Path = Path("/proc")) -> set[str]:
    """Inodes of the sockets listening on `port` (any address) in this network namespace."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            local_port = fields[1].rpartition(":")[2]
            if int(local_port, 16) == port:
                inodes.add(fields[9])
    return inodes


def _command(pid: str, proc: Path) -> str:
    try:
        raw = (proc / pid / "cmdline").read_bytes()
    except OSError:
        return "?"
    words = raw.rstrip(b"\0").split(b"\0")
    text = " ".join(w.decode(errors="replace") for w in words[:6])
    return text[:120] or "?"


def port_holder(*, port: int, proc: Path = Path("/proc")) -> str:
    """'pid 123 (cmd …)' for the processes listening on `port`; 'a socket of another user or
    namespace' when the socket is seen but not its owner; '' when nothing is seen."""
    inodes = listening_inodes(port=port, proc=proc)
    if not inodes:
        return ""
    wanted = {f"socket:[{i}]" for i in inodes}
    holders: list[str] = []
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()][:MAX_PROCESSES]
    except OSError:
        pids = []
    for pid in pids:
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) in wanted:
                    holders.append(f"pid {pid} ({_command(pid, proc)})")
                    break
            except OSError:
                continue
    return ", ".join(holders) or "a socket whose process is not visible here"
