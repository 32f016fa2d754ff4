"""Heads and poolings, each a registry entry, so new tasks add heads without touching the runner."""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

POOLERS: Registry = Registry("pooling")
HEADS: Registry = Registry("head")


@POOLERS.register("cls")
def pool_cls(hidden: torch.Tensor, mask: torch.Tensor, outputs=None) -> torch.Tensor:
    return hidden[:, 0]


@POOLERS.register("mean")
def pool_mean(hidden: torch.Tensor, mask: torch.Tensor, outputs=None) -> torch.Tensor:
    """Average over real tokens only (sentence-embedding models are trained this way)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


@POOLERS.register("last")
def pool_last(hidden: torch.Tensor, mask: torch.Tensor, outputs=None) -> torch.Tensor:
    """Last real token (decoder-only models); works for left and right padding."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * mask).argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


@POOLERS.register("pooler")
def pool_pooler(hidden: torch.Tensor, mask: torch.Tensor, outputs=None) -> torch.Tensor:
    """The backbone's own pooler output (BERT's tanh layer over CLS)."""
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is None:
        from ..errors import UserError

        raise UserError("this backbone has no pooler output", where="model.pooling", expected="cls, mean or last")
    return pooled


@HEADS.register("classification")
class ClassificationHead(nn.Module):
    """Dropout + linear (or a small MLP when ``hidden`` > 0) over pooled features."""

    def __init__(self, in_features: int, num_labels: int, dropout: float = 0.1, hidden: int = 0):
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout)]
            in_features = hidden
        layers.append(nn.Linear(in_features, num_labels))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


@HEADS.register("image_classification")
class ImageClassificationHead(ClassificationHead):
    """Global average pooling of a (B, C, H, W) feature map, then the classification head; pooled
    (B, C) features pass straight through, so cached features work too."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features.mean((2, 3)) if features.ndim == 4 else features)
