"""Keep freed memory inside the process while training on a CPU.

glibc serves every block above its mmap threshold (128 KiB, rising to at most 32 MiB) straight from
the OS and unmaps it on ``free``, so each training step faults its activations back in page by page.
On the traffic detector (batch 8, 320 px, one thread) that is ~68,000 minor page faults per step and
about a tenth of the step time; with mmap off and a high trim threshold it is ~250 once the heap
has settled (``benchmarks/runner_overhead.py``).  The price is peak memory: freed blocks stay in the
heap, and aligned blocks can leave a block's worth of slack (6 detector epochs with validation: peak
RSS 2,178 -> 2,490 MB, +14%, for 1.3x the images/s; ``train.cpu_allocator: system`` keeps glibc's
defaults).  PyTorch's CPU tuning guide
reaches the same end by preloading jemalloc or tcmalloc; ``mallopt`` needs no extra library.
Settings are process-wide and stay set.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # <malloc.h>
TRIM_THRESHOLD = 1 << 30  # free memory at the heap top is returned only beyond 1 GiB


@functools.cache  # process-wide: once is enough, however many Runners a process builds
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed blocks instead of unmapping them; False where there is no glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
