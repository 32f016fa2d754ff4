"""The gradient-reversal layer (Ganin & Lempitsky 2015) and the schedule of its weight.

Forward it is the identity; backward it multiplies the gradient by ``-lam``.  Put between the
features and a domain classifier, one backward pass trains the classifier to tell the domains apart
while pushing the feature extractor (the backbone's trainable part) to make them indistinguishable.
"""
from __future__ import annotations

import math

import torch


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Identity on ``x``; its gradient comes back scaled by ``-lam``."""
    return _Reverse.apply(x, float(lam))


def reversal_weight(progress: float, schedule: str, weight: float, gamma: float = 10.0) -> float:
    """The reversal weight at training progress ``progress`` in [0, 1] (optimizer steps done / total).

    ``ganin``: ``weight * (2 / (1 + exp(-gamma * p)) - 1)``, Ganin et al.'s schedule: 0 at the start,
    while the domain classifier is still random and its gradient is noise, rising to ~``weight``
    (0.987 of it at p = 0.5 for gamma 10).  ``linear``: ``weight * p``.  ``constant``: ``weight``.
    """
    p = min(max(progress, 0.0), 1.0)
    if schedule == "ganin":
        return weight * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)
    if schedule == "linear":
        return weight * p
    if schedule == "constant":
        return weight
    raise ValueError(f"unknown reversal schedule {schedule!r}")
