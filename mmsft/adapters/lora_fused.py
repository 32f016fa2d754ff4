"""LoRA's update ``scaling * B(A(dropout(x)))`` as one autograd function that keeps almost nothing.

peft computes the update module by module, and on a CPU each targeted layer then keeps, until
backward: a float dropout mask and the dropped-out copy of ``x`` (both the size of ``x``), and the
rank-r product ``A(x)``.  With the base weights frozen nothing else needs them, so LoRA kept more
activations than full fine-tuning, and the small rank-r tensors, carved out of the freed blocks of
earlier steps, fragmented the heap: finance_sentiment (batch 32, 40 steps, one thread) peaked at
2,051 MB above the loaded model against full fine-tuning's 1,442 MB (``benchmarks/throughput.py``
reports the figures after the change).  Here the update keeps ``x`` itself (under autocast one half-width
copy, shared by the targets fed the same input), the two small weights and its dropout mask's seed, and
recomputes the rest in backward (the mask, an ``r``-wide matmul: a few per cent of the layer's FLOPs).

The mask's seed is drawn from the global RNG, like ``nn.Dropout``'s mask, so a seeded run is reproducible; the maths
is peft's (inverted dropout, then ``x @ A.T @ B.T * scaling``), the mask ``mmsft.models.dropout``'s (the
drop rate kept to 1/65536, a 0 / 1 byte per element: a bool mask multiplied a bf16 ``x`` 5x slower).  Only the training forward of plain
LoRA linears changes: parameters, their names, saving, loading and merging stay peft's, and anything
else (evaluation, merged or disabled adapters, DoRA, per-row ``adapter_names``) runs peft's own forward;
under autocast the update runs in the autocast dtype.
"""
from __future__ import annotations

import types
import weakref

import torch
from torch import nn

from ..models.dropout import draw_seed, keep_mask


class _LoraDelta(torch.autograd.Function):
    """``(x * keep / (1 - p)) @ A.T @ B.T * scaling`` saving ``x``, the weights and the mask's seed."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: float, scaling: float) -> torch.Tensor:
        ctx.p, ctx.seed = p, draw_seed(p, x.device)
        keep, ctx.dropout_scale = keep_mask(x.shape, p, x.device, ctx.seed)
        ctx.save_for_backward(x, a, b)
        ctx.scaling = scaling
        low = nn.functional.linear(x if keep is None else x * keep, a)
        return nn.functional.linear(low, b) * (scaling * ctx.dropout_scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, a, b = ctx.saved_tensors
        keep, _ = keep_mask(x.shape, ctx.p, x.device, ctx.seed)  # the forward's mask, drawn again from its seed
        dropped = (x if keep is None else x * keep).reshape(-1, x.shape[-1])
        grad = grad.reshape(-1, grad.shape[-1]) * ctx.scaling
        grad_low = grad @ b  # (n, r)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_low @ a).view(x.shape) * ctx.dropout_scale
            grad_x = grad_x if keep is None else grad_x * keep
        if ctx.needs_input_grad[1]:
            grad_a = grad_low.t() @ dropped * ctx.dropout_scale
        if ctx.needs_input_grad[2]:
            grad_b = grad.t() @ (dropped @ a.t()) * ctx.dropout_scale
        return grad_x, grad_a, grad_b, None, None


_last_cast: list = [None]  # (source, its version, dtype, the cast): weak references, so nothing is kept alive


def _cast_once(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x.to(dtype)``, one copy shared by the LoRA linears fed the same ``x`` one after another (an attention's
    query, key and value): each would cast it again and keep its copy until backward (autocast caches casts of
    weights only).  Reused only while ``x`` is the same, unchanged tensor and its copy is still alive."""
    if x.dtype == dtype:
        return x
    last = _last_cast[0]
    if last is not None and last[0]() is x and last[1] == x._version and last[2] == dtype:
        cast = last[3]()
        if cast is not None:
            return cast
    cast = x.to(dtype)
    _last_cast[0] = (weakref.ref(x), x._version, dtype, weakref.ref(cast))
    return cast


def _frozen_linear(layer: nn.Module, x: torch.Tensor, dtype) -> torch.Tensor:
    """``layer(x)``; under autocast, a frozen ``nn.Linear``'s weight is cast once and kept, not cast again at
    every call (autocast caches casts only of weights that require grad: LoRA's base weights were cast every
    forward, 4-6% of a MiniLM step).  The copy is redone when the weight changes (its version or storage)."""
    if dtype is None or type(layer) is not nn.Linear or layer.weight.requires_grad or layer.weight.dtype == dtype:
        return layer(x)
    weight = layer.weight
    stamp = (weight._version, weight.data_ptr(), dtype)
    cached = layer.__dict__.get("_mmsft_cast")
    if cached is None or cached[0] != stamp:
        bias = layer.bias
        frozen_bias = None if bias is None or bias.requires_grad else bias.detach().to(dtype)
        cached = layer.__dict__["_mmsft_cast"] = (stamp, weight.detach().to(dtype), frozen_bias)
    bias = layer.bias if layer.bias is not None and layer.bias.requires_grad else cached[2]
    return nn.functional.linear(x, cached[1], bias)


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """peft's ``lora.Linear.forward`` for the training case; every other case goes to peft's own.

    Under autocast the update runs in the autocast dtype, as peft's linears would: ``x`` and the two
    factors are cast once (the factors' gradients flow back through the cast in fp32), and the saved
    ``x`` is the half-width copy."""
    if (args or kwargs or not self.training or self.disable_adapters or self.merged or not torch.is_grad_enabled()
            or any(n in self.lora_variant for n in self.active_adapters)):
        return type(self).forward(self, x, *args, **kwargs)
    device = x.device.type
    autocast_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if autocast_dtype is not None:
        x = _cast_once(x, autocast_dtype)  # for the base layer and every adapter (autocast would cast it for each)
    result = _frozen_linear(self.base_layer, x, autocast_dtype)
    for name in self.active_adapters:
        if name not in self.lora_A:
            continue
        a, b = self.lora_A[name].weight, self.lora_B[name].weight
        dtype = autocast_dtype or a.dtype  # .to() of a tensor already in dtype is the tensor itself
        dropout = self.lora_dropout[name]
        p = dropout.p if isinstance(dropout, nn.Dropout) else 0.0
        with torch.autocast(device, enabled=False):
            delta = _LoraDelta.apply(x.to(dtype), a.to(dtype), b.to(dtype), p, self.scaling[name])
        result = result + delta.to(result.dtype)
    return result


def fuse_lora_updates(model: nn.Module) -> int:
    """Give every plain LoRA linear of ``model`` the fused training forward; returns how many (idempotent)."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused = 0
    for module in model.modules():
        if type(module) is not LoraLinear or getattr(module, "lora_variant", None):  # DoRA, quantized bases: peft's
            continue
        if not all(type(m) is nn.Linear and m.bias is None for m in (*module.lora_A.values(), *module.lora_B.values())):
            continue  # a LoRA with bias (lora_bias) or a custom layer: peft's forward
        if not all(isinstance(d, (nn.Dropout, nn.Identity)) for d in module.lora_dropout.values()):
            continue
        module.forward = types.MethodType(_fused_forward, module)
        fused += 1
    return fused
