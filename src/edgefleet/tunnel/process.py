"""Settings of the processes that relay tunnel bytes (`edgefleet ssh`/`tunnel`, the server,
the device's tunnel link).

Each relayed frame passes through a few short-lived buffers of about a frame's size (1 MiB).
With glibc's default malloc settings those come from fresh `mmap`s, or from heap memory that
was just given back to the kernel, so every 4 KiB page of every buffer costs a page fault:
about one fault per page relayed. `tune_malloc` keeps such buffers in the heap and the heap's
free top (up to `TRIM_THRESHOLD`) mapped. Measured with `bench/tunnel.py`: the faults went
from about one per 4 KiB relayed to almost none, and the CPU time per relayed byte down by
10-20% in the CLI and the device link, 5-8% in the server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from edgefleet.tunnel.frames import MAX_PAYLOAD

T = TypeVar("T")

MMAP_THRESHOLD = 4 * MAX_PAYLOAD
"""Allocations at least this large get their own mmap (glibc's default starts at 128 KiB)."""
TRIM_THRESHOLD = 8 * MAX_PAYLOAD
"""Free memory at the top of the heap is returned to the kernel only beyond this much (the
most a relaying process keeps mapped for later frames once a transfer is over)."""
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_tuned: bool | None = None
_libc: Any = None


def tune_malloc() -> bool:
    """Set glibc's malloc thresholds for this process (once); False where malloc is not
    glibc's (nothing is changed there)."""
    global _tuned, _libc
    if _tuned is not None:
        return _tuned
    _tuned = False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
    except (ValueError, OSError):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - glibc always has them
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    _libc = libc
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                  and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned


def release_memory() -> None:
    """Give the heap's free memory back to the kernel now (glibc `malloc_trim`), so that
    what `tune_malloc` keeps mapped during a transfer is not kept after it (the device link
    calls this when its last stream ends)."""
    if _tuned and _libc is not None:
        _libc.malloc_trim(0)


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` in a process tuned for relaying (`tune_malloc`). (uvloop, which
    the server runs on, made no measurable difference to these processes' CPU time.)"""
    tune_malloc()
    return asyncio.run(main)
