"""LR schedules: linear warmup then linear decay, cosine decay or constant."""
from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR

from ..registry import SCHEDULES



@SCHEDULES.register("linear")
def linear(progress: float) -> float:
    return max(0.0, 1.0 - progress)


@SCHEDULES.register("cosine")
def cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@SCHEDULES.register("constant")
def constant(progress: float) -> float:
    return 1.0


def build_scheduler(optimizer, name: str, total_steps: int, warmup_ratio: float) -> LambdaLR:
    decay = SCHEDULES.get(name)
    warmup = int(round(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return decay((step - warmup) / max(1, total_steps - warmup))

    return LambdaLR(optimizer, factor)
