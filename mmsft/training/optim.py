"""AdamW with weight decay on weight matrices only (biases and norms excluded) and a head LR."""
from __future__ import annotations

import torch
from torch import nn


def no_decay(name: str, param: torch.Tensor) -> bool:
    lowered = name.lower()
    return param.ndim < 2 or "norm" in lowered or lowered.endswith(".bias")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, head_lr: float | None = None) -> torch.optim.AdamW:
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group_lr = head_lr if (head_lr is not None and name.startswith("heads.")) else lr
        decay = 0.0 if no_decay(name, param) else weight_decay
        groups.setdefault((group_lr, decay), []).append(param)
    if not groups:
        raise RuntimeError("no trainable parameters: the adapter froze everything")
    param_groups = [{"params": ps, "lr": glr, "weight_decay": wd} for (glr, wd), ps in groups.items()]
    return torch.optim.AdamW(param_groups, lr=lr)
