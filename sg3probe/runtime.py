"""Process-wide runtime settings that the command line applies once at start-up.

Why threads: torch's CPU sums are split among its threads, so the last bits of a result depend on
the thread count; a mapper trained with 1 and 2 threads differs by 6e-8 after one step and by
2e-4 after 40, and the trained edits differ in what they achieve. A run's numbers must not
depend on what else the machine is doing, so `choose_threads` uses every core this process may
run on unless told otherwise (--set threads=N, OMP_NUM_THREADS, or SG3PROBE_THREADS); run.json
records the count. (The load average cannot choose instead: it counts the previous command's
work for a minute after it ends.) On a CPU whose cores are already busy (other jobs, a training
in the background), torch's threads wait for each other at every operation: two threads on a
loaded 2-core machine ran the toy model 4-6x slower than one, so beside other work choose fewer
threads yourself.

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

from sg3probe.errors import ConfigError

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


def choose_threads(requested: int = 0) -> int:
    """torch CPU threads to use: `requested` if > 0, else SG3PROBE_THREADS or OMP_NUM_THREADS if
    set, else the cores this process may run on (never the load: results follow the count)."""
    if requested < 0:
        raise ConfigError(f"threads {requested}: give a positive number of torch CPU threads, or 0 for one per core")
    if requested > 0:
        return requested
    own = os.environ.get("SG3PROBE_THREADS", "")
    if own:
        if not (own.isdigit() and int(own) > 0):
            raise ConfigError(f"SG3PROBE_THREADS={own!r} is not a positive integer: set it to a number of torch CPU "
                              "threads, or unset it for one per core")
        return int(own)
    omp = os.environ.get("OMP_NUM_THREADS", "")  # set by other tools too, so read leniently
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def apply_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads by `choose_threads`; returns the number set."""
    import torch

    threads = choose_threads(requested)
    torch.set_num_threads(threads)
    return threads
