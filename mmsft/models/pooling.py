"""Poolings of token states into one vector per sample, each a ``POOLERS`` entry."""
from __future__ import annotations

import torch

from ..errors import UserError
from ..registry import POOLERS


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
        raise UserError("this backbone has no pooler output", where="model.heads.*.options.pooling", expected="cls, mean or last")
    return pooled
