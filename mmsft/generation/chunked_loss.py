"""Token cross-entropy computed from final states, a chunk of positions at a time.

The full-vocabulary logits of a training batch are the largest tensors an LM fine-tune keeps: in
fp32, every 1,000 target positions of SmolLM2-135M's 49,152-token vocabulary are 197 MB, and the loss
keeps its log-softmax and then the logits' gradient beside them.  Here only
positions with a label are projected, a chunk of at most ``LOGIT_BUDGET`` logits at a time, each
chunk under activation checkpointing: backward recomputes that chunk's logits instead of keeping
them, so the extra memory is one chunk's logits and gradient (64 MB each) whatever the batch
(the README's runner section gives the measured SmolLM2 peak).  The maths is ``F.cross_entropy``'s mean over the
labelled positions, label smoothing included.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

LOGIT_BUDGET = 1 << 24  # logits per chunk: 64 MB in fp32 (341 positions of a 49,152-token vocabulary)


def _chunk_loss_sum(states: torch.Tensor, labels: torch.Tensor, project: Callable, label_smoothing: float) -> torch.Tensor:
    return F.cross_entropy(project(states).float(), labels, reduction="sum", label_smoothing=label_smoothing)


def chunked_cross_entropy(states: torch.Tensor, labels: torch.Tensor, project: Callable[[torch.Tensor], torch.Tensor],
                          vocab_size: int, ignore_index: int = -100, label_smoothing: float = 0.0,
                          budget: int = LOGIT_BUDGET) -> torch.Tensor:
    """Mean cross-entropy of ``project(states)`` against ``labels`` over positions whose label is not
    ``ignore_index``; ``states`` (..., H) and ``labels`` (...) align position by position."""
    flat, targets = states.reshape(-1, states.shape[-1]), labels.reshape(-1)
    picked = (targets != ignore_index).nonzero().squeeze(-1)
    flat, targets = flat.index_select(0, picked), targets.index_select(0, picked)
    step = max(1, budget // max(vocab_size, 1))
    grad = torch.is_grad_enabled() and flat.requires_grad
    sums = []
    for start in range(0, max(flat.shape[0], 1), step):  # no labelled position: one empty chunk, 0 / 0 = nan as F.cross_entropy
        part, want = flat[start:start + step], targets[start:start + step]
        if grad:
            sums.append(checkpoint(_chunk_loss_sum, part, want, project, label_smoothing, use_reentrant=False))
        else:
            sums.append(_chunk_loss_sum(part, want, project, label_smoothing))
    return torch.stack(sums).sum() / picked.numel()
