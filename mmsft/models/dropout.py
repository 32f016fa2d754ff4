"""Dropout whose mask costs a few times less on a CPU, with the same maths as ``nn.Dropout``.

On a CPU torch draws one Mersenne-Twister number per element for ``bernoulli_`` (3.4 ms for a
32 x 40 x 384 activation at one thread, 80x a multiply of the same tensor), and a bool mask then
multiplies a bf16 tensor through a type-converting slow path (3.1 ms; 0.6 ms with a uint8 mask, 0.35 ms
for two bf16 tensors).  With torch's masks ``bernoulli_`` alone was 7-8% of a MiniLM step under bf16
autocast; side by side these masks make LoRA 1.26x and full fine-tuning 1.12x faster
(``benchmarks/results/ab_dropout_masks.md``).  Here the mask is cut from 64-bit random words, four 16-bit
lanes per draw, compared with ``round(65536 p)`` (the drop rate kept to 1/65536; the scale
``65536 / (65536 - t)`` keeps the expectation exact), made as one byte per element of 0 / 1.

Each mask draws one 63-bit seed from torch's global generator (as ``nn.Dropout`` draws from it, so a
seeded run repeats and the runner's exact resume, which saves that generator, still holds); its words
come from numpy's SFC64 generator seeded with it, 2.5x faster than torch's generator.  LoRA's fused
update (``mmsft.adapters.lora_fused``) and attention (``mmsft.models.attention``) keep only the seed and
draw the mask again in backward: their masks covered every adapted projection's input and every
attention map (finance LoRA, longest batch: masks kept for backward 96 MB before, 14 MB after, of 509 and
319 MB, ``benchmarks/throughput_row.py``).  Plain dropout keeps its byte mask.
Other devices keep torch's own dropout (CUDA's Philox generator is already fast).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import nn

LANES = 65536  # the mask's resolution: one 16-bit lane per element


def draw_seed(p: float, device: torch.device) -> Optional[int]:
    """The seed of one dropout mask, drawn from torch's global generator; None when the rate rounds to zero
    (no mask, nothing drawn)."""
    if round(LANES * p) <= 0:
        return None
    return int(torch.randint(0, 2 ** 63 - 1, (1,), device=device).item())


def _random_words(count: int, device: torch.device, seed: int) -> torch.Tensor:
    """``count`` random int64 words from ``seed``: on a CPU numpy's SFC64 (0.22 ms for 123k words at one thread,
    torch's Mersenne Twister 0.54 ms: masks are drawn twice a step, in forward and again in backward), elsewhere
    a torch generator of that device."""
    if device.type == "cpu":
        return torch.from_numpy(np.random.SFC64(seed).random_raw(count).view(np.int64))
    generator = torch.Generator(device).manual_seed(seed)
    return torch.randint(-2 ** 63, 2 ** 63 - 1, (count,), dtype=torch.int64, device=device, generator=generator)


def keep_mask(shape, p: float, device: torch.device, seed: Optional[int]) -> tuple[Optional[torch.Tensor], float]:
    """A uint8 0 / 1 keep-mask of ``shape`` and its inverted-dropout scale, the same for the same ``seed``
    (``draw_seed``'s, None exactly when the rate rounds to zero, which gives ``(None, 1.0)``).  Cut as 16-bit
    lanes from 64-bit random words: 4x fewer words than elements."""
    threshold = round(LANES * p)
    if threshold <= 0:
        return None, 1.0
    if threshold >= LANES:
        return torch.zeros(shape, dtype=torch.uint8, device=device), 0.0
    count = math.prod(shape)
    words = _random_words((count + 3) // 4, device, seed)
    lanes = words.view(torch.int16)[:count].view(shape)  # uniform over [-32768, 32767]
    keep = lanes >= threshold - LANES // 2
    return keep.view(torch.uint8), LANES / (LANES - threshold)


class _Dropout(torch.autograd.Function):
    """``x * keep * scale``, saving only the one-byte mask (drawing it again in backward, as LoRA's update and
    attention do, would save those 14 MB for about 1 ms more per call, 32 x 40 x 384, one thread)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep, ctx.scale = keep_mask(x.shape, p, x.device, draw_seed(p, x.device))
        ctx.save_for_backward(keep)
        return (x * keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return (grad * keep).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)``, with the cheaper mask on a CPU."""
    if not training or round(LANES * p) <= 0:
        return x
    if x.device.type != "cpu" or not x.is_floating_point():
        return nn.functional.dropout(x, p, training)
    return _Dropout.apply(x, p)


class CpuDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same state, still an ``nn.Dropout`` to whoever checks) drawing its mask
    as :func:`dropout` does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def use_cpu_dropout(model: nn.Module) -> int:
    """Make every plain ``nn.Dropout`` of ``model`` a :class:`CpuDropout`; returns how many (idempotent).
    Parameters, buffers and state dicts are untouched: it only changes how the mask is drawn."""
    changed = 0
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = CpuDropout
            changed += 1
    return changed
