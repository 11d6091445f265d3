"""Process memory settings for worker processes.

A task allocates a few multi-megabyte arrays per item (canvases, PNG scanlines) and frees them at
the end of the item. glibc gives freed memory at the top of the heap back to the OS, so the next
item's arrays page-fault again: measured ~830 faults per 1024x1024 CVAT item at ~4 us each on this
machine (3.3 ms of 9.8 ms). ``keep_freed_heap`` asks glibc to keep some freed heap for reuse
(``mallopt(M_TOP_PAD)``) and to serve arrays up to ``MMAP_THRESHOLD_BYTES`` from the heap
(``M_MMAP_THRESHOLD``) so that freed ones are reused. No-op off Linux/glibc.
"""

from __future__ import annotations

import ctypes
import sys

M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
DEFAULT_TOP_PAD_BYTES = 64 << 20
MMAP_THRESHOLD_BYTES = 32 << 20
"""Allocations up to this size come from the heap (glibc's 64-bit maximum). Dask workers set
``MALLOC_TRIM_THRESHOLD_``, which turns off glibc's adaptive mmap threshold: every array above
128 KiB was mmapped and page-faulted in again on every item (measured ~390 faults per item ->
1; machine-only exports 91-102 -> 107-128 images/s on one core)."""
_done = False


def keep_freed_heap(top_pad_bytes: int = DEFAULT_TOP_PAD_BYTES) -> bool:
    """Keep up to ``top_pad_bytes`` of freed heap in this process (once; later calls are no-ops).
    Returns whether the setting is in effect."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = bool(libc.mallopt(M_TOP_PAD, int(top_pad_bytes)))
        ok = ok and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _done = ok
    return ok
