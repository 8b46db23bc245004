"""Keep the agent's large buffers in its heap (glibc's malloc).

A chatty job's output is read 1 MiB at a time, and the log sink joins and cuts blocks of
that size. glibc serves an allocation that big from a fresh ``mmap`` of zeroed pages at
first, and gives memory at the top of its heap back to the kernel as soon as 128 KiB
are free there, so block after block paid for page faults and zeroing in the kernel.
:func:`keep_large_buffers` lets allocations up to :data:`MMAP_THRESHOLD` come from the
heap and keeps up to :data:`TRIM_THRESHOLD` free at its top for the next block. Jobs are
not affected (the setting ends at exec). An operator's own ``MALLOC_*_`` or
``GLIBC_TUNABLES`` malloc settings win: the agent then leaves malloc alone.
"""

from __future__ import annotations

import ctypes
import os

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Allocations up to this size come from the heap, not a ``mmap`` of their own.
MMAP_THRESHOLD = 4 * 1024 * 1024

#: Free memory kept at the top of the heap before it is given back.
TRIM_THRESHOLD = 16 * 1024 * 1024

#: Environment variables through which an operator tunes malloc themselves.
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def tuned_by_operator(env: dict[str, str] | os._Environ[str]) -> bool:
    """Whether ``env`` already tunes malloc (then the agent does not)."""
    return any(name in env for name in _OPERATOR_SETTINGS) or "glibc.malloc." in env.get(
        "GLIBC_TUNABLES", ""
    )


def keep_large_buffers() -> bool:
    """Set the thresholds in this process; True when the C library took them (glibc),
    False when it has no ``mallopt`` (musl's ignores it) or the operator's settings
    stand."""
    if tuned_by_operator(os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
