"""Process-wide runtime settings that the command line applies once at start-up.

Why malloc: the generator allocates large temporaries on every layer. With glibc's defaults
each one above 128 kB is mmap'ed and munmap'ed again, and the page faults cost more CPU than
the arithmetic (shared/conformance/TIMINGS.md measured 2-4.6x on NVIDIA's code; our generator
gains about as much). Keeping freed memory in the process avoids that, at the price of a
higher resident set. Set SG3PROBE_MALLOC=default to keep glibc's behaviour.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Keep freed memory in the process (glibc only); returns whether the settings were applied."""
    if os.environ.get("SG3PROBE_MALLOC", "tuned") == "default":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, 1 << 30) and mallopt(_M_TOP_PAD, 256 << 20)
    return bool(ok)
