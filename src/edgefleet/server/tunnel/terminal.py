"""The interactive end of `edgefleet ssh`: the local terminal in raw mode, its window size
following the remote PTY, and the remote shell's exit status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import termios
import tty
from typing import Any

from edgefleet.client import Login
from edgefleet.server.tunnel.remote import RemoteError, connect, pipe_stream
from edgefleet.tunnel.stream import Stream


def window_size() -> tuple[int, int]:
    """(rows, cols) of the local terminal (its own size first, like ssh; then $LINES and
    $COLUMNS; then 24 x 80)."""
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines and size.columns:
            return size.lines, size.columns
    fallback = shutil.get_terminal_size((80, 24))
    return fallback.lines, fallback.columns


async def run_shell(login: Login, *, device: str, service: str | None,
                    route: dict[str, Any] | None = None) -> int:
    """An interactive shell on the device's host or in a service; its exit status."""
    rows, cols = window_size()
    async with connect(login, device) as remote:
        stream = await remote.open({"kind": "shell", "service": service, "rows": rows,
                                    "cols": cols, "term": os.environ.get("TERM", "xterm"),
                                    **(route or {})})
        return await _interactive(stream)


async def _interactive(stream: Stream) -> int:
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    is_tty = os.isatty(fd)
    saved = termios.tcgetattr(fd) if is_tty else None

    def resized() -> None:
        r, c = window_size()
        task = loop.create_task(stream.resize(rows=r, cols=c))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    if is_tty:
        tty.setraw(fd)
        loop.add_signal_handler(signal.SIGWINCH, resized)
    try:
        return await pipe_stream(stream, stdin=fd, stdout=sys.stdout.fileno(),
                                 stderr=sys.stderr.fileno())
    except RemoteError:
        raise
    finally:
        if saved is not None:
            loop.remove_signal_handler(signal.SIGWINCH)
            with contextlib.suppress(termios.error):
                termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
