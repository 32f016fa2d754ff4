"""Which precision ``train.mixed_precision: auto`` trains in.

CUDA: bf16 where the GPU has it, fp16 otherwise.  CPU: bf16 autocast only where this CPU is measured to run
bf16 matmuls clearly faster than fp32 (AMX / AVX512-BF16 parts: ~2.6x on MiniLM's shapes), because on
CPUs without bf16 instructions torch emulates it and is far slower: on the AMD EPYC this project runs on,
a 1280x384x1536 matmul at one thread ran at 85 GFLOP/s in fp32 and 1.2 GFLOP/s in bf16
(``benchmarks/throughput.py`` measures and reports both peaks).  Where the CPU's flags say it has no bf16
instructions, nothing is timed; otherwise the probe takes a fraction of a second, once per process.
"""
from __future__ import annotations

import functools
import time

import torch

BF16_MIN_SPEEDUP = 1.3  # below this, bf16's rounding is not worth it
PROBE_SHAPE = (256, 384, 384)  # rows x in x out, a slice of a MiniLM projection


def matmul_gflops(dtype: torch.dtype, shape=PROBE_SHAPE, min_seconds: float = 0.02, budget_seconds: float = 0.5) -> float:
    """Measured GFLOP/s of ``shape``'s matmul in ``dtype`` at the current thread count (best of a few runs)."""
    m, k, n = shape
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b  # warm-up (and one-off kernel selection)
    best, spent, reps = float("inf"), 0.0, 0
    while reps < 3 or (spent < min_seconds and reps < 50):
        tick = time.perf_counter()
        a @ b
        took = time.perf_counter() - tick
        best, spent, reps = min(best, took), spent + took, reps + 1
        if spent > budget_seconds:  # an emulated dtype: a few runs say enough
            break
    return 2 * m * k * n / best / 1e9


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86; elsewhere (ARM: "bf16") the probe decides


def cpu_lacks_bf16() -> bool:
    """True only where /proc/cpuinfo names an x86 CPU without bf16 instructions (torch then emulates bf16)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), None)
    except OSError:
        return False
    return flags is not None and "avx2" in flags and not any(f in flags for f in BF16_FLAGS)


@functools.cache
def cpu_bf16_speedup() -> float:
    """bf16 over fp32 matmul throughput on this CPU (0 where bf16 matmul is unavailable or emulated)."""
    if cpu_lacks_bf16():
        return 0.0
    try:
        return matmul_gflops(torch.bfloat16) / matmul_gflops(torch.float32)
    except RuntimeError:
        return 0.0


def resolve_precision(requested: str, device: torch.device) -> str:
    """``requested`` unless it is ``auto``; then the fastest precision this device trains well in."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP:
        return "bf16"
    return "no"
