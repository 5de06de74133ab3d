"""glibc malloc settings for the processes that train, test and benchmark (the CLI and the suite worker).

MNC allocates and frees full-size RoI tensors every step (1024 RoIs x 64 x 28 x 28 floats, ~200 MB each). By
default glibc serves every block above its mmap threshold with a fresh ``mmap`` and returns it on ``free``, so
each step page-faults hundreds of MB in again. Keeping freed memory in the heap for reuse (no mmap for large
blocks, no trimming, a 512 MB top pad) made MNC-3 inference 1.6x and training 1.4x faster on the 2-core
reference machine, Mask R-CNN's 4-18 % (README, "Speed"); the cost is that a process's resident memory stays
at its peak.

Set ``MNC_BENCH_ALLOCATOR=system`` to keep glibc's defaults. Elsewhere than glibc (macOS, musl) nothing is
done.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
SETTINGS = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1, _M_TOP_PAD: 512 << 20}
OPT_OUT = "MNC_BENCH_ALLOCATOR"


_applied = False


def tuned() -> bool:
    """Whether this process runs with :data:`SETTINGS` (its RSS then never shrinks)."""
    return _applied


def tune_allocator() -> bool:
    """Apply :data:`SETTINGS` through ``mallopt``; True if glibc accepted all of them."""
    global _applied
    if os.environ.get(OPT_OUT, "").lower() == "system":
        return False
    try:
        # the process's own symbols: libc's, without find_library's ldconfig subprocess
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # gnu_get_libc_version exists in glibc only: other C libraries' mallopt takes other parameter numbers.
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS.items())
    return _applied
