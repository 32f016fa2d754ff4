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
``train.cpu_allocator: release`` goes the other way, for a run that must fit a memory budget: every
block from 256 KiB up is mapped from the OS and unmapped on ``free`` (a fixed threshold switches
glibc's rising one off), so resident memory follows the live tensors instead of the heap's high-water
mark.  SmolLM2-135M's no-grad forward (batch 16 x 78 tokens) allocates 2.4 GB in passing and glibc's
default heap kept 600 MB of it resident afterwards.  Settings are process-wide and stay set.

Both modes also cap the CPU kernel caches (``cap_kernel_caches``): bf16 matmuls go through oneDNN, and
both ideep's primitive cache (``LRU_CACHE_CAPACITY``) and oneDNN's (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``)
keep up to 1,024 shape-specific kernels with their buffers; with length-grouped batches every new
sequence length adds some, so RSS rose ~10 MB a step (finance LoRA, bf16, 80 steps: +830 MB; flat in
fp32).  At 64 each it stays flat, at the same samples/s (training memory 1,353 -> 1,063 MB over 30 steps,
``scripts/rss_per_step.py``, ``benchmarks/throughput_row.py``).  Either cap alone is not enough.  Over whole runs with
validation passes between epochs (128-row batches, more shapes) the caches weigh far more: finance LoRA, 3 epochs,
``release``: training memory 1,597 MB at 64 kernels, 730 MB at 16 (full fine-tuning 1,460 / 904; the bare loop over
the same 363 steps without validation: 738 MB at 64), at the same speed side by side (LoRA 0.97x, full 1.07x,
``benchmarks/results/ab_kernel_cache_16.md``): both modes keep 16.  The
variables are read when the first kernel is made, so ``make_accelerator`` sets them before its precision probe;
values a user exported win.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # <malloc.h>
TRIM_THRESHOLD = 1 << 30  # free memory at the heap top is returned only beyond 1 GiB
RELEASE_THRESHOLD = 256 << 10  # release: blocks from 256 KiB up are mapped and unmapped one by one
KERNEL_CACHE_CAPACITY = "16"  # oneDNN / ideep primitives kept (default 1,024 each)
KERNEL_CACHE_VARIABLES = ("LRU_CACHE_CAPACITY", "ONEDNN_PRIMITIVE_CACHE_CAPACITY")


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Apply glibc ``mallopt`` settings; False where there is no glibc (musl and other libcs have no mallopt)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(bool(libc.mallopt(option, value)) for option, value in settings)
    except (OSError, AttributeError):
        return False


@functools.cache  # process-wide: once is enough, however many Runners a process builds
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed blocks instead of unmapping them."""
    return _mallopt((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))


@functools.cache
def release_freed_memory() -> bool:
    """Tell glibc's malloc to hand large freed blocks and the free heap top back to the OS at once."""
    return _mallopt((M_MMAP_THRESHOLD, RELEASE_THRESHOLD), (M_TRIM_THRESHOLD, RELEASE_THRESHOLD))


def cap_kernel_caches(mode: str) -> None:
    """Cap oneDNN's and ideep's kernel caches unless ``mode`` is ``system`` or the user set them already."""
    if mode != "system":
        for name in KERNEL_CACHE_VARIABLES:
            os.environ.setdefault(name, KERNEL_CACHE_CAPACITY)


def configure_allocator(mode: str) -> bool:
    """``train.cpu_allocator`` applied: True where ``keep`` or ``release`` took effect (``system``: glibc's defaults)."""
    return {"keep": keep_freed_memory, "release": release_freed_memory}.get(mode, lambda: False)()
