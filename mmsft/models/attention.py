"""Attention for CPU training with attention dropout: the math path with mmsft's cheaper dropout mask.

With a dropout rate, torch's CPU ``scaled_dot_product_attention`` leaves its fused kernel for the math
path and draws the probabilities' mask with ``bernoulli_`` (MiniLM, 32 x 12 x 40 x 40 per layer:
4.1 ms of mask alone, a tenth of the layer's attention); here the same maths (``softmax(q k^T * scale +
mask)``, fp32 softmax, inverted dropout, ``@ v``) runs with ``mmsft.models.dropout``'s mask.  Everything
else -- evaluation, no dropout, another device, position biases, soft-capping, paged caches, asked-for
attention weights -- is transformers' own ``sdpa`` function, unchanged.

It is registered with transformers as the attention implementation ``mmsft_cpu_train`` (same masks as
``sdpa``); the runner switches a transformers model's configs to it on a CPU (``train.cpu_dropout:
fast``).  The name lives in memory only: a saved config does not carry it.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

from .dropout import dropout as cpu_dropout

NAME = "mmsft_cpu_train"
_UNSUPPORTED = ("position_bias", "cache", "softcap", "s_aux", "sinks")


@functools.cache
def _sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def cpu_training_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask, dropout: float = 0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' attention-function signature: ``(attn_output (B, Q, H, D), None)``."""
    if (query.device.type != "cpu" or dropout == 0.0 or not module.training or kwargs.get("output_attentions")
            or any(kwargs.get(k) is not None for k in _UNSUPPORTED)):
        return _sdpa()(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        from transformers.integrations.sdpa_attention import repeat_kv

        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    q_len, k_len = query.shape[-2], key.shape[-2]
    causal = (is_causal if is_causal is not None else getattr(module, "is_causal", True)) and attention_mask is None and q_len > 1
    if causal:
        attention_mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
    if attention_mask is not None:
        mask = attention_mask[..., :k_len]
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(cpu_dropout(probs, dropout), value)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register ``NAME`` with transformers' attention and mask interfaces (idempotent); returns the name."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if NAME not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(NAME, cpu_training_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME


def use_cpu_training_attention(model: nn.Module) -> int:
    """Point every transformers config in ``model`` that runs ``sdpa`` at :func:`cpu_training_attention`;
    returns how many configs changed (idempotent)."""
    configs = {id(c): c for m in model.modules() if (c := getattr(m, "config", None)) is not None
               and getattr(c, "_attn_implementation", None) == "sdpa"}
    if configs:
        register()
    for config in configs.values():
        config._attn_implementation = NAME
    return len(configs)
