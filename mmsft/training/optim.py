"""AdamW with weight decay on weight matrices only (biases and norms excluded), a separate LR for the
parts that start from scratch (heads and modules) and layer-wise LR decay (lower blocks of a
pretrained backbone move less: they hold general features)."""
from __future__ import annotations

import re

import torch
from torch import nn

# ".layer.3." (BERT), ".layers.3." (LLaMA, Gemma), ".blocks.3." / ".block.3." (timm, T5), ".h.3." (GPT-2)
BLOCK_INDEX = re.compile(r"\.(?:layer|layers|blocks|block|h)\.(\d+)\.")
FRESH = ("heads.", "inserts.")  # parameters created for the task, not pretrained


def no_decay(name: str, param: torch.Tensor) -> bool:
    lowered = name.lower()
    return param.ndim < 2 or "norm" in lowered or lowered.endswith(".bias")


def layer_scales(names: list[str], layer_decay: float) -> dict[str, float]:
    """LR multiplier per parameter: block i of n gets decay**(n - i), embeddings decay**(n + 1),
    everything else (heads, poolers, final norms) 1."""
    blocks = {name: int(m.group(1)) for name in names if not name.startswith(FRESH) and (m := BLOCK_INDEX.search(name))}
    n = max(blocks.values(), default=-1) + 1
    scales = {}
    for name in names:
        if name in blocks:
            scales[name] = layer_decay ** (n - blocks[name])
        elif "embed" in name.lower() and not name.startswith(FRESH):
            scales[name] = layer_decay ** (n + 1)
        else:
            scales[name] = 1.0
    return scales


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, head_lr: float | None = None,
                    layer_decay: float = 1.0, fused: bool = True) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; ``fused=False`` under an fp16 grad scaler, whose skipped steps
    accelerate detects only on the unfused optimizer."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    scales = layer_scales([name for name, _ in named], layer_decay) if layer_decay != 1.0 else {}
    groups: dict[tuple[float, float], list] = {}
    for name, param in named:
        group_lr = head_lr if (head_lr is not None and name.startswith(FRESH)) else lr * scales.get(name, 1.0)
        decay = 0.0 if no_decay(name, param) else weight_decay
        groups.setdefault((group_lr, decay), []).append(param)
    if not groups:
        raise RuntimeError("no trainable parameters: the adapter froze everything")
    param_groups = [{"params": ps, "lr": glr, "weight_decay": wd} for (glr, wd), ps in groups.items()]
    # torch's fused kernel (the HF Trainer's default, ``adamw_torch_fused``) instead of the per-tensor loop a CPU
    # otherwise runs, where it takes every parameter (floating point on a CPU or CUDA device); elsewhere torch chooses
    fused = fused and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for _, p in named)
    return torch.optim.AdamW(param_groups, lr=lr, fused=True if fused else None)
