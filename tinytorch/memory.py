"""Keep freed host memory for reuse instead of handing it back to the OS at once (CPU speed).

Every NumPy op allocates its output, and a training step makes thousands of temporaries of the
same few sizes. glibc's malloc serves a large request (over its mmap threshold, which starts
at 128 KiB) with a fresh mmap and unmaps it on free, and it trims the top of the heap back to
the OS as soon as 128 KiB there are free. Either way the next array of that size starts on
pages the kernel has to fault in again, one 4 KiB page at a time: for a 1.5 MB array, 384 page
faults, which can cost more than the elementwise arithmetic that fills it (chapter 07's GPT
step: benchmarks/results/memory_cpu_cpu.md).

`keep_freed_memory()` sets glibc's thresholds so that blocks up to 32 MiB come from the heap and
up to 1 GiB of freed heap stays mapped: the same pages are reused step after step. The cost is
that the process keeps its peak heap size (its RSS does not shrink after a big step; it never
grows beyond what it used). tinytorch calls it once when imported, on Linux with glibc, unless
the environment sets TINYTORCH_KEEP_FREED_MEMORY=0. It is process-wide: anything else in the
process (PyTorch too) allocates the same way from then on. Elsewhere (macOS, Windows, musl) it
does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["keep_freed_memory", "page_faults"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed blocks (see the module docstring); True if it did."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok


def page_faults() -> int:
    """This process's minor page faults so far (getrusage; -1 where there is none)."""
    try:
        import resource
    except ImportError:  # Windows
        return -1
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


KEPT = os.environ.get("TINYTORCH_KEEP_FREED_MEMORY", "1") != "0" and keep_freed_memory()
