"""The relaying processes' malloc settings (edgefleet.tunnel.process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHURN = """
import resource, sys
from edgefleet.tunnel.process import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
frame = bytes(256 * 1024)
for _ in range(50):  # warm up
    a = frame + b"x"; b = a + b"y"; del a, b
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(1000):  # what a relay does per frame: a few frame-sized buffers at once
    a = frame + b"x"; b = a + b"y"; c = b + b"z"; del a, b, c
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], check=True, capture_output=True,
                         text=True, timeout=60, env={**os.environ})
    return int(out.stdout.strip())


@pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc's malloc only")
def test_frame_sized_buffers_stop_faulting_in_pages() -> None:
    """768 MB of frame-sized buffers: glibc's defaults fault their pages in again and again
    (about one fault per 4 KiB); tuned, the heap keeps them."""
    default, tuned = faults("default"), faults("tuned")
    assert default > 50_000, default  # the problem is there to fix on this libc
    assert tuned < 1_000, tuned



KEEP_THEN_RELEASE = """
import sys
from edgefleet.tunnel.process import release_memory, tune_malloc
assert tune_malloc()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
held = [bytearray(b"x" * (256 * 1024)) for _ in range(24)]  # 6 MiB of transfer buffers
del held
kept = rss()
release_memory()
print(kept - rss())
"""


@pytest.mark.skipif(not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc's malloc only")
def test_release_memory_gives_the_kept_buffers_back() -> None:
    """Tuned, the freed buffers of a transfer stay mapped (below the trim threshold) until
    `release_memory`, which the device link calls when its last stream ends."""
    out = subprocess.run([sys.executable, "-c", KEEP_THEN_RELEASE], check=True,
                         capture_output=True, text=True, timeout=60)
    assert int(out.stdout.strip()) > 4 * 1024, out.stdout  # KB given back
