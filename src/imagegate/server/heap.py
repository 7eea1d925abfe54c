"""Keep image-sized buffers in the heap (glibc's malloc), so each image is not new pages.

Every image response passes through several buffers of its own size (1-10 MB): the upstream
read, the parser's chunks, the joined body. glibc serves a block above ``M_MMAP_THRESHOLD``
(128 KiB at first, raised on the fly up to 32 MiB) with a fresh ``mmap`` and unmaps it on free,
and hands the top of the heap back to the kernel once more than ``M_TRIM_THRESHOLD`` of it is
free. Under load, with many images in flight at different sizes, both keep happening: the next
image's buffers are new pages, and the kernel faults in and zeroes each one. Measured on the
gateway at 16 concurrent 2.2 MB responses (``perf stat -e page-faults`` and ``perf record``): 880k
page faults a second, 16 % of its CPU in the page-fault path and 2 % in ``munmap``; with the two
thresholds fixed, CPU per request fell from 4.65 to 3.77 ms (``bench/bench_gateway.py --pin``).

Fixed thresholds turn glibc's dynamic adjustment off: blocks up to ``MMAP_THRESHOLD`` come from
the heap, and up to ``TRIM_THRESHOLD`` of free heap is kept for the next request. The cost is that
RSS stays near the last peak between bursts instead of shrinking (the peak itself is bounded by
concurrency × body size either way). Nothing here is needed for correctness: on a libc without
``mallopt`` (musl, macOS, Windows) it does nothing, and ``IMAGEGATE_MALLOC_TUNING=0`` turns it off.
Why by hand: no maintained package sets these two values; it is two ``mallopt`` calls via ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Mapping

from imagegate.server.settings import turned_off

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_large_blocks"]

_log = logging.getLogger("imagegate.server")

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling for this value on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 128 * 1024 * 1024  # free heap kept for reuse: ~60 images of 2 MB


def keep_large_blocks(environ: Mapping[str, str]) -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True when both were applied."""
    if turned_off(environ, "IMAGEGATE_MALLOC_TUNING"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - glibc's own symbol: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not applied:
        _log.warning("mallopt refused the heap thresholds; large buffers stay on glibc's defaults")
    return applied
