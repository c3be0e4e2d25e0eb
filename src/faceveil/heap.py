"""The C heap's settings (glibc): freed memory is kept for the next array instead of going back to the system.

replace works on a face's window at frame resolution through many short-lived arrays of a few MB (a 310 px face:
~0.5 M pixels, 2-6 MB each). glibc's malloc hands such blocks back to the system when they are freed (its trim
threshold, twice the largest block freed so far) and maps them in again, page by page, for the next one: the
kernel's page faults and zeroing then cost as much as the arithmetic. Measured on this project's machine
(research/replace_speed.py, the talking head's ~310-400 px faces): 1.3-1.5 s of system CPU in 9.6 s for 80 faces,
0.2-0.3 s with the heap kept; a 2 MB multiply with a fresh operand 4.4 ms -> 0.6 ms. ``keep_freed`` keeps up to
TRIM_KEEP freed at the heap's top, grows it TOP_PAD at a time and takes blocks under MMAP_MIN from the heap (32 MB:
a 4K RGB frame): the process keeps at most about that much more memory than it uses. Outputs are the same (the
heap's layout is no part of the arithmetic). No-op elsewhere (macOS, Windows, musl: no mallopt, or none of these).
"""
from __future__ import annotations

import ctypes
import sys

TOP_PAD, TRIM_KEEP, MMAP_MIN = 64 << 20, 128 << 20, 32 << 20
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's malloc.h
_done = False


def keep_freed() -> bool:
    """Set the heap's settings once per process (glibc only); True where they are set."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = all(mallopt(k, v) == 1 for k, v in ((_M_TOP_PAD, TOP_PAD), (_M_TRIM_THRESHOLD, TRIM_KEEP),
                                                (_M_MMAP_THRESHOLD, MMAP_MIN)))
    return _done
