"""Keep freed heap memory in the process instead of handing it back to the OS (glibc).

Why: a PnP solver allocates and frees the same large activation buffers at every iteration.
By default glibc serves blocks above its mmap threshold (which it adapts up to 32 MiB) with a
fresh ``mmap`` and unmaps them on ``free``, so every iteration faults its buffers in again,
page by page.  Measured on the 2-core CPU of ``benchmarks/RESULTS.md`` (section "allocator"),
a batch of colour PnP-ADMM runs spent about 40% of its time in the kernel that way; raising the
mmap and trim thresholds removes it and the same work runs about 1.8x faster.  The price: the
process keeps its peak heap instead of shrinking after it.

The ``pnp-stable`` command line and the benchmark scripts call :func:`retain_freed_memory` at
start.  Importing the library does not: it is a process-wide setting, the caller's to choose.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["retain_freed_memory"]

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_C_INT_MAX = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    """The running glibc, or None on other C libraries (musl, macOS, Windows)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def retain_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Let the process reuse freed memory instead of returning it to the OS (glibc only).

    Sets glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to ``threshold_bytes``: blocks
    up to that size come from the heap, and the heap is not trimmed until that much is free at
    its top.  Iterative solvers then stop page-faulting their buffers in at every iteration
    (about 1.8x faster on a 2-core CPU; ``benchmarks/allocator.py``).  Process-wide and lasting.

    Parameters
    ----------
    threshold_bytes : int
        Both thresholds, in bytes: 1 to 2**31 - 1.  The default (1 GiB) covers the activations
        of a 1024x1024 colour image.

    Returns
    -------
    bool
        True if glibc accepted both settings; False where the C library is not glibc (nothing
        is changed there).

    Examples
    --------
    >>> from pnp_stable import retain_freed_memory
    >>> retain_freed_memory() in (True, False)
    True
    >>> retain_freed_memory(0)
    Traceback (most recent call last):
    ...
    ValueError: threshold_bytes must be an int from 1 to 2147483647 (bytes); got 0
    """
    if isinstance(threshold_bytes, bool) or not isinstance(threshold_bytes, int) or not 1 <= threshold_bytes <= _C_INT_MAX:
        raise ValueError(f"threshold_bytes must be an int from 1 to {_C_INT_MAX} (bytes); got {threshold_bytes!r}")
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success, 0 when it refuses the value.
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, threshold_bytes))
