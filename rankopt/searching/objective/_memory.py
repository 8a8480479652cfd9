"""Handing freed heap memory back to the operating system between phases of a search.

Neutral ground (imports no rankopt subpackage).

glibc's malloc raises its mmap threshold (up to 32 MiB) each time a large block is freed, so
after the first big activations most tensors of a few MiB live on the heap; freed, they
stay resident as holes that later allocations of other sizes do not fill. Over a sensitivity
profile and a few trials of resnet8 on 64x64 images that grew the peak resident memory by
several hundred MB, by an amount that depended on the order of allocations rather than on
the data (measured in ``benchmarks/bench_memory.py``). :func:`release_free_memory` after each
phase (a sensitivity point, a trial) bounds it to what one phase leaves behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

__all__ = ["release_free_memory"]


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """glibc's ``malloc_trim``, or None (not Linux, or another C library such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the heap's free pages to the operating system (glibc ``malloc_trim(0)``).

    Costs well under a millisecond on a search's heap; memory still in use is untouched.

    Returns:
        Whether memory was released (False also where ``malloc_trim`` does not exist).
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
