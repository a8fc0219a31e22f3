"""Keeping the daemon's C heap from creeping.

Measured with the soak benchmark (`bench/soak.py`): over 10,000 container
lifecycles the daemon's resident memory grew by 2.8 MB per 1000 while the
memory in use stayed flat, both the Python objects (tracemalloc) and the C
heap's allocated bytes (glibc's `mallinfo2`): the growth was free memory
glibc kept inside its heap. Two causes, two remedies, both glibc's own:

* glibc raises its mmap threshold each time a large mmap'd block is freed
  (reading logs and layers frees such blocks), after which large buffers
  come from the heap and leave holes there; a fixed threshold (`mallopt`
  M_MMAP_THRESHOLD, which also turns the adjustment off) keeps them mmap'd
  and given back whole when freed;
* what is freed in the middle of the heap stays resident until trimmed:
  `malloc_trim(0)` hands free pages back, once a minute, on a worker thread.

Elsewhere (musl, or a libc without these calls) both are no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024  # glibc's starting value, kept fixed
TRIM_THRESHOLD = 256 * 1024
TRIM_EVERY = 60.0  # seconds


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


_LIBC = _libc()


def configure() -> None:
    """Fix the thresholds (at daemon start, before the engine allocates)."""
    if _LIBC is None:
        return
    _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def trim() -> None:
    """Hand the heap's free pages back to the system (blocking: glibc walks the heap)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


async def keep_trimmed() -> None:
    """Trim once a minute, for the daemon's life (cancel to stop)."""
    while True:
        await asyncio.sleep(TRIM_EVERY)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(trim)
