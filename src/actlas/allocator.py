"""The C allocator of a long tensor loop: glibc keeps freed memory for the next step.

A render step allocates and frees the same activation buffers at every step. By default glibc
hands a block above its mmap threshold out by a fresh ``mmap`` (its pages fault in, zeroed by the
kernel, at each step) and gives freed memory above its trim threshold back to the system. Both
thresholds are dynamic until either is set: setting the trim threshold alone leaves the mmap
threshold at 128 KiB for good, and measured here a render step became 1.7x slower. So both are set:
the trim threshold to 1 GiB, the mmap threshold to 32 MiB (the most the dynamic threshold reaches
on 64 bits). The arithmetic is untouched: icons are the same bytes. Measured in
``benchmarks/bench_malloc.py``.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
TRIM_THRESHOLD = 1 << 30
MMAP_THRESHOLD = 32 << 20
# a user's own allocator settings win
USER_SETTINGS = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "GLIBC_TUNABLES",
    "ACTLAS_NO_MALLOPT",
)


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds for this process (see the module); True if set.

    Nothing is changed off glibc (macOS, musl), or where the environment sets any of ``USER_SETTINGS``.
    """
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
