"""Serving the API with uvicorn inside the supervisor's event loop, on a socket bound before
the supervisor starts (so the port, even an ephemeral one, is known to target resolution)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the supervisor owns SIGINT/SIGTERM


def bind(*, host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: an ephemeral one). Raises OSError when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then
    # (without it every response with a body waits ~40 ms for a delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class ApiServer:
    """One uvicorn server on pre-bound sockets; `run()` until cancelled or `stop()`."""

    def __init__(self, *, app: FastAPI, sockets: list[socket.socket]) -> None:
        self.sockets = sockets
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._server = _Server(uvicorn.Config(
            app, lifespan="off", access_log=False, log_level="warning", ws="none",
            timeout_graceful_shutdown=2, server_header=False, date_header=False))

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    async def run(self) -> None:
        try:
            await self._server.serve(sockets=self.sockets)
        except asyncio.CancelledError:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.shutdown(sockets=self.sockets), timeout=3)
            raise
        finally:
            for sock in self.sockets:
                sock.close()

    def stop(self) -> None:
        self._server.should_exit = True
