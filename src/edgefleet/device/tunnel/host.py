"""Shells and commands on the device's host: a PTY shell, or a command with stdin, stdout,
stderr and exit code. Whatever runs ends with its stream."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import struct
import termios

from edgefleet.tunnel.stream import Stream, StreamReset

READ_SIZE = 64 * 1024


def login_shell() -> list[str]:
    for shell in (os.environ.get("SHELL", ""), "/bin/bash", "/bin/sh"):
        if shell and shutil.which(shell):
            return [shell, "-l"] if shell.endswith("bash") else [shell]
    return ["/bin/sh"]


def set_winsize(fd: int, *, rows: int, cols: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _controlling_tty() -> None:  # in the child, after setsid: the PTY becomes its terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def end_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the process group of a session (nothing is left running on the device)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGHUP)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    end_group(proc)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), timeout=5)


async def host_shell(stream: Stream, *, command: str | None, rows: int, cols: int,
                     term: str, env: dict[str, str] | None = None) -> None:
    """A PTY on the host running a login shell (or `command` in a shell), with `env` (the
    device's environment for host sessions, see `sessions.host_env`)."""
    master, slave = os.openpty()
    set_winsize(master, rows=rows, cols=cols)
    argv = ["/bin/sh", "-c", command] if command else login_shell()
    env = {**(env or os.environ), "TERM": term}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=_controlling_tty, env=env, cwd=os.environ.get("HOME", "/"))
    finally:
        os.close(slave)
    await stream.accept()
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)

    def readable() -> None:
        try:
            data = os.read(master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: every process on the terminal is gone
            data = b""
        output.put_nowait(data)
        if not data or output.full():  # credit is short: stop reading until it drains
            loop.remove_reader(master)
            if data:
                paused.set()

    paused = asyncio.Event()
    os.set_blocking(master, False)
    loop.add_reader(master, readable)

    async def pump_out() -> None:
        while True:
            data = await output.get()
            if paused.is_set():
                paused.clear()
                loop.add_reader(master, readable)
            if not data:
                return
            await stream.write(data)

    async def pump_in() -> None:
        while True:
            chunk = await stream.read()
            if chunk.kind == "data":
                view = memoryview(chunk.data)
                while view:
                    try:
                        n = os.write(master, view)
                    except BlockingIOError:
                        await asyncio.sleep(0.01)
                        continue
                    view = view[n:]
            elif chunk.kind == "resize":
                set_winsize(master, rows=chunk.rows, cols=chunk.cols)
            elif chunk.kind == "eof":
                return

    out_task = asyncio.create_task(pump_out())
    in_task = asyncio.create_task(pump_in())
    try:
        await out_task
        code = await proc.wait()
        await stream.send_exit(code)
        await stream.write_eof()
    finally:
        loop.remove_reader(master)
        in_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StreamReset):
            await in_task
        os.close(master)
        await _reap(proc)


async def host_command(stream: Stream, *, command: str,
                       env: dict[str, str] | None = None) -> None:
    """`sh -c command` on the host with pipes: stdin and stdout byte-exact, stderr apart."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True, cwd=os.environ.get("HOME", "/"), env=env)
    assert proc.stdin and proc.stdout and proc.stderr
    await stream.accept()
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

    async def pump_in() -> None:
        try:
            while (chunk := await stream.read()).kind != "eof":
                if chunk.kind == "data":
                    stdin.write(chunk.data)
                    await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command stopped reading; what it wrote still goes out
        finally:
            stdin.close()

    async def pump(reader: asyncio.StreamReader, *, err: bool) -> None:
        while data := await reader.read(READ_SIZE):
            await stream.write(data, stderr=err)

    in_task = asyncio.create_task(pump_in())
    try:
        await asyncio.gather(pump(stdout, err=False), pump(stderr, err=True))
        code = await proc.wait()
        await stream.send_exit(code)
        await stream.write_eof()
    finally:
        in_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StreamReset, Exception):
            await in_task
        await _reap(proc)
