"""zfcore: the library behind the companion to Zeiler & Fergus (ECCV 2014).

Importing it makes one process-wide setting, :func:`keep_freed_memory` (see
:mod:`zfcore.layout` for what it is worth); it imports no other module, so that ``zf --help``
starts without PyTorch.
"""
import ctypes
import os
import sys

__version__ = "0.1.0"

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# blocks up to this size come from the heap, not from pages of their own: glibc's largest
# threshold on 64-bit systems (its default grows to it by itself, but only after a block of
# each size has been freed once, and lets the heap be trimmed again)
_MMAP_THRESHOLD = 32 << 20
# free memory at the top of the heap is handed back to the system only beyond this
_TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory in the process for the next allocation of the kind, instead
    of returning it to the system and faulting fresh pages in again (what it is worth: the
    docstring of :mod:`zfcore.layout`).

    Process-wide and idempotent; a process keeps up to 1 GiB of what it freed (never more than
    its peak) instead of returning it.
    Returns whether the setting was made: False with ``ZF_MALLOC=system``, off Linux, or where
    the C library has no ``mallopt`` that accepts it (musl).
    """
    if os.environ.get("ZF_MALLOC", "").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1


keep_freed_memory()
