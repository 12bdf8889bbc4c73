"""The last line of defence of `edgefleet`: an error a user can cause (a server that is not
running, an engine socket that is missing, a port taken, no permission, bad input) becomes
one line saying what failed and what to do, and a non-zero exit code; never a traceback
(`EDGEFLEET_DEBUG=1` shows it)."""

from __future__ import annotations

import errno
import sqlite3
import sys

NO_PERMISSION = ("run it as a user who may (sudo edgefleet ...), or point it at files you own"
                 " (--data-dir, --config)")


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit code, message) for an exception that reached the top."""
    import httpx

    from edgefleet.engine.errors import EngineError, EngineUnavailable
    from edgefleet.model.errors import InvalidInput

    if isinstance(exc, InvalidInput):
        return 2, " ".join(str(exc).split())
    if isinstance(exc, EngineUnavailable) or (
            isinstance(exc, EngineError) and "not reachable" in str(exc)):
        return 1, (f"{exc}: start the engine (dockerd, balena-engine), or pass"
                   " --engine-socket PATH")
    if isinstance(exc, EngineError):
        return 1, str(exc)
    if isinstance(exc, httpx.TransportError):
        where = getattr(getattr(exc, "request", None), "url", "the server")
        return 1, (f"cannot reach {where} ({exc}): is it running? Start it (`edgefleet server"
                   " run`, or `edgefleet up`), or check the address")
    if isinstance(exc, PermissionError):
        return 1, f"permission denied: {exc.filename or exc}: {NO_PERMISSION}"
    if isinstance(exc, sqlite3.OperationalError) and (
            "readonly" in str(exc) or "unable to open" in str(exc)):
        return 1, f"cannot write the supervisor's store ({exc}): {NO_PERMISSION}"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return 1, f"{exc.strerror}: another program uses that port; stop it or pick another port"
    if isinstance(exc, FileNotFoundError):
        return 1, f"{exc.filename or exc}: no such file or directory"
    if isinstance(exc, OSError):
        return 1, f"{exc}"
    return 1, (f"unexpected error: {type(exc).__name__}: {exc} (run again with"
               " EDGEFLEET_DEBUG=1 for the traceback, and please report it)")


def report_and_exit(exc: BaseException) -> None:
    """Print the one line on stderr and exit with its code."""
    import os

    if os.environ.get("EDGEFLEET_DEBUG"):
        raise exc
    from edgefleet.model.secret_names import redact_urls

    code, message = explain(exc)
    print(f"error: {redact_urls(message)}", file=sys.stderr)
    sys.exit(code)
