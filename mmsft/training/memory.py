"""How much memory a training run takes: on a GPU what torch allocated, on a CPU the resident set (RSS).

``mmsft train`` restarts the peak count once the model and data are loaded, so ``peak_memory_mb`` is the run's
own peak (feature caching, training, validation) even in a process that held something bigger before (a notebook,
a test session), and records what the process held at that moment: the peak minus that is the run's training
memory.
"""
from __future__ import annotations

import resource
from typing import Optional

import torch

STATUS = "/proc/self/status"


def _status_mb(field: str) -> Optional[float]:
    try:
        with open(STATUS) as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def reset_peak_memory(device: torch.device) -> bool:
    """Start the peak count afresh (Linux: ``clear_refs`` 5 resets VmHWM); False where it cannot."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def current_memory_mb(device: torch.device) -> Optional[float]:
    """Memory held now, in the units of ``peak_memory_mb``; None where the OS does not say (no /proc)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _status_mb("VmRSS")


def peak_memory_mb(device: torch.device) -> float:
    """The peak since the last ``reset_peak_memory`` (or since the process started)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
