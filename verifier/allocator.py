"""The C allocator's settings for a verification process: memory a pass frees is kept for the next.

Bound passes allocate and free many short-lived tensors of 0.1 to 1 MB each. By default glibc's
``malloc`` serves such blocks by ``mmap`` from a size it adjusts as the process runs (128 KiB
at first) and hands the top of its heap back to the system once more than a threshold (also
dynamic) is free there, so the next pass takes the same memory back one page fault at a time.
On the ACAS Xu input-split searches of 3_3 prop_2 and 4_2 prop_2 that came to 0.8 to 2.7
million minor page faults, against 29 to 41 thousand with the settings below; the wall time
fell by 8 % and 1 % (``benchmarks/bench_allocator.py``, ``benchmarks/results/allocator.md``).

:func:`keep_freed_memory` fixes both thresholds high: blocks up to 32 MiB come from the heap,
and freed memory goes back to the system only beyond 1 GiB free at its top. The resident size
then stays near the run's peak instead of following it down. The command lines call it first;
library callers may call it themselves. Forked processes inherit the settings.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30
"""Free memory kept at the top of the heap before any goes back to the system (bytes)."""
MMAP_THRESHOLD = 32 << 20
"""Blocks from this size up get their own mapping (bytes; glibc's largest accepted value)."""


def keep_freed_memory() -> bool:
    """Sets glibc's trim and mmap thresholds (:data:`TRIM_THRESHOLD`, :data:`MMAP_THRESHOLD`)
    for this process and those it forks; True when both were set, False where they do not
    apply (another C library or system: nothing is changed there). Affects speed and resident
    memory only, never a computed value."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
