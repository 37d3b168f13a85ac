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

import contextlib
import ctypes
import os
import platform
import threading

__all__ = ["retain_freed_memory", "freed_memory_kept"]

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_C_INT_MAX = 2**31 - 1
#: glibc's documented initial values of both thresholds (malloc(3), mallopt(3)).
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024

#: Whether the process chose its own thresholds (retain_freed_memory, or glibc's environment
#: variables): then a run leaves them alone.
_process_chose = any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"))
_lock = threading.Lock()
_depth = 0


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
    global _process_chose
    libc = _glibc()
    if libc is None:
        return False
    _process_chose = True
    return _set_thresholds(libc, threshold_bytes)


def _set_thresholds(libc, value: int) -> bool:
    # mallopt returns 1 on success, 0 when it refuses the value.
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, value)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, value))


@contextlib.contextmanager
def freed_memory_kept(threshold_bytes: int = 1 << 30):
    """Keep freed buffers in the process for the duration of a run, then hand them back.

    What :func:`retain_freed_memory` does, scoped: the solvers of :func:`pnp_stable.deblur` and
    its siblings run inside it, so the Python API is as fast as the command line without a
    lasting process-wide setting.  On exit both thresholds return to glibc's initial values
    (128 KiB; glibc then no longer adapts its mmap threshold, the one lasting difference) and
    ``malloc_trim`` gives the retained memory back to the system.  Nothing is changed where the
    C library is not glibc, or where the process chose its thresholds itself
    (:func:`retain_freed_memory`, ``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``).  Nested and
    concurrent uses share one setting.

    Examples
    --------
    >>> with freed_memory_kept():
    ...     total = sum(range(10))
    >>> total
    45
    """
    global _depth
    libc = None if _process_chose else _glibc()
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _set_thresholds(libc, threshold_bytes)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and not _process_chose:
                _set_thresholds(libc, _GLIBC_DEFAULT_THRESHOLD)
                libc.malloc_trim(0)
