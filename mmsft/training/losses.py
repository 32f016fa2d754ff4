"""Loss registry for classification heads: cross-entropy (+ label smoothing), class-weighted, focal, and
binary cross-entropy for multi-label heads."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..registry import LOSSES

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def balanced_weights(class_counts: list[int]) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (sklearn's 'balanced')."""
    counts = torch.tensor(class_counts, dtype=torch.float).clamp(min=1)
    return counts.sum() / (len(counts) * counts)


@LOSSES.register("cross_entropy")
def cross_entropy(spec, weights: Optional[torch.Tensor] = None) -> LossFn:
    def loss(logits, labels):
        w = weights.to(logits.device, logits.dtype) if weights is not None else None
        return F.cross_entropy(logits, labels, weight=w, label_smoothing=spec.label_smoothing)

    return loss


@LOSSES.register("focal")
def focal(spec, weights: Optional[torch.Tensor] = None) -> LossFn:
    """Focal loss (Lin et al. 2017): down-weights easy examples by (1 - p_t) ** gamma."""

    def loss(logits, labels):
        logp = F.log_softmax(logits.float(), -1)
        logp_t = logp.gather(1, labels[:, None]).squeeze(1)
        factor = (1 - logp_t.exp()).pow(spec.focal_gamma)
        per = -factor * logp_t
        if weights is not None:
            w = weights.to(logits.device)[labels]
            return (per * w).sum() / w.sum()
        return per.mean()

    return loss


@LOSSES.register("binary_cross_entropy")
def binary_cross_entropy(spec, weights: Optional[torch.Tensor] = None) -> LossFn:
    """Multi-label: one independent sigmoid per class against a multi-hot row (``weights``: per class)."""

    def loss(logits, labels):
        pos = weights.to(logits.device) if weights is not None else None
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=pos)

    return loss


def build_loss(spec, class_counts: Optional[list[int]] = None) -> LossFn:
    weights = balanced_weights(class_counts) if spec.class_weights == "balanced" and class_counts else None
    return LOSSES.get(spec.name)(spec, weights)
