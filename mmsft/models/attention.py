"""Attention for CPU training with attention dropout: the math path with mmsft's cheaper dropout mask,
keeping ``q``, ``k``, ``v`` and half-width probabilities for backward.

With a dropout rate, torch's CPU ``scaled_dot_product_attention`` leaves its fused kernel for the math
path and draws the probabilities' mask with ``bernoulli_`` (MiniLM, 32 x 12 x 40 x 40 per layer:
4.1 ms of mask alone, a tenth of the layer's attention); here the same maths (``softmax(q k^T * scale +
mask)``, fp32 softmax, inverted dropout, ``@ v``) runs with ``mmsft.models.dropout``'s mask.  The math
path also kept, per layer until backward, the fp32 probabilities, their half-width dropped-out copy and
the mask: 122 of the 454 MB finance full fine-tuning saved for backward on its longest batch (32 x 96).
Here it keeps the half-width probabilities only (the ones the value product uses) and draws the mask
again from its seed; softmax's backward runs in fp32 from them.  Recomputing the probabilities from
``q`` and ``k`` instead, as memory-efficient kernels do, kept 40.5 MB less but cost full fine-tuning
0.92x the samples/s side by side (``benchmarks/results/ab_session_memory.md`` at commit ee6e081).  Everything
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

from .dropout import draw_seed, keep_mask

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
    q_len, k_len = query.shape[-2], key.shape[-2]
    causal = (is_causal if is_causal is not None else getattr(module, "is_causal", True)) and attention_mask is None and q_len > 1
    if causal:
        attention_mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
    mask = None if attention_mask is None else attention_mask[..., :k_len].detach()
    if torch.is_autocast_enabled("cpu"):  # the dtype autocast would run the two matmuls in
        dtype = torch.get_autocast_dtype("cpu")
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    with torch.autocast("cpu", enabled=False):
        out = _DroppedAttention.apply(query, key, value, mask, dropout, scale)
    return out.transpose(1, 2).contiguous(), None


def _probabilities(q, k, mask, scale):
    """``softmax(q k^T * scale + mask)`` in fp32 (or wider), from ``q`` and ``k`` in their own dtype."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool else scores + mask
    return torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))


class _DroppedAttention(torch.autograd.Function):
    """``dropout(softmax(q k^T * scale + mask)) @ v``, saving ``q``, ``k``, ``v``, the half-width probabilities and
    the dropout mask's seed (the eager path kept fp32 probabilities, their dropped-out copy and the mask)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, p: float, scale: float):
        ctx.p, ctx.scale, ctx.seed = p, scale, draw_seed(p, q.device)
        probs = _probabilities(q, k, mask, scale).to(q.dtype)
        keep, dropout_scale = keep_mask(probs.shape, p, q.device, ctx.seed)
        ctx.save_for_backward(q, k, v, probs, mask)
        return torch.matmul(probs if keep is None else (probs * keep).mul_(dropout_scale), v)

    @staticmethod
    def backward(ctx, grad):
        q, k, v, probs, mask = ctx.saved_tensors
        keep, dropout_scale = keep_mask(probs.shape, ctx.p, q.device, ctx.seed)
        dropped = probs if keep is None else (probs * keep).mul_(dropout_scale)
        grad = grad.to(v.dtype)
        grad_v = torch.matmul(dropped.transpose(-1, -2), grad)
        del dropped
        grad_probs = torch.matmul(grad, v.transpose(-1, -2))
        if keep is not None:
            grad_probs = (grad_probs * keep).mul_(dropout_scale)
        wide = torch.promote_types(probs.dtype, torch.float32)
        grad_scores = torch._softmax_backward_data(grad_probs.to(wide), probs.to(wide), -1, wide)
        if mask is not None and mask.dtype == torch.bool:
            grad_scores = grad_scores.masked_fill_(~mask, 0)
        grad_scores = grad_scores.mul_(ctx.scale).to(q.dtype)
        grad_q = torch.matmul(grad_scores, k) if ctx.needs_input_grad[0] else None
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q) if ctx.needs_input_grad[1] else None
        return grad_q, grad_k, grad_v, None, None, None


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
