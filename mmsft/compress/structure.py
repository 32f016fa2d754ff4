"""Model surgery on a backbone's stack of blocks: keep the first k blocks, prune attention heads,
zero the smallest weights.

These change the network in place and are shared by compression (``--prune``), by the ``compressed``
adapter (which replays the recorded structure on a fresh backbone before loading its weights) and by
distillation (a student = the teacher's first k blocks).  Head pruning slices the query/key/value
rows and the output projection's columns of BERT-style encoders: transformers 5 dropped
``prune_heads``, and its attention reshapes by head size, so fewer heads need no other change.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..errors import UserError


def keep_blocks(backbone, keep: int) -> None:
    """Keep the first ``keep`` blocks of ``backbone.blocks()`` (drop the top ones) and say so in the
    model config, so ``save_pretrained`` writes a folder ``from_pretrained`` rebuilds as is."""
    stack = backbone.blocks()
    if not 1 <= keep <= len(stack):
        raise UserError(f"cannot keep {keep} of {len(stack)} blocks", expected=f"1 .. {len(stack)}")
    del stack[keep:]
    config = getattr(backbone.model, "config", None)
    if config is not None:
        for owner in (config, getattr(config, "text_config", None)):
            if owner is not None and getattr(owner, "num_hidden_layers", None):
                owner.num_hidden_layers = keep
            if owner is not None and isinstance(getattr(owner, "layer_types", None), list):
                owner.layer_types = owner.layer_types[:keep]


def _attention(block: nn.Module):
    """(self-attention, output projection) of a BERT-style block, or a UserError naming the layout."""
    attn = getattr(getattr(block, "attention", None), "self", None)
    out = getattr(getattr(getattr(block, "attention", None), "output", None), "dense", None)
    if attn is None or out is None or not all(hasattr(attn, n) for n in ("query", "key", "value", "attention_head_size")):
        raise UserError(f"head pruning needs BERT-style blocks (attention.self.query/key/value and attention.output.dense); "
                        f"this backbone's blocks are {type(block).__name__}", where="--prune heads",
                        expected="a BERT-family encoder (MiniLM, BERT, RoBERTa), or --prune layers / magnitude")
    return attn, out


def head_counts(backbone) -> list[int]:
    return [attn.query.out_features // attn.attention_head_size for attn, _ in map(_attention, backbone.blocks())]


def _sliced(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    weight = linear.weight.detach().index_select(dim, index).clone()
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    if dim == 0 and bias is not None:
        bias = bias.index_select(0, index).clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def prune_heads(backbone, keep: dict[int, Iterable[int]]) -> None:
    """Keep only the listed heads of each named block (block index -> head indices kept)."""
    blocks = backbone.blocks()
    for index, heads in keep.items():
        attn, _ = _attention(blocks[index])
        heads = sorted(set(int(h) for h in heads))
        size, total = attn.attention_head_size, attn.query.out_features // attn.attention_head_size
        if not heads or heads[-1] >= total or heads[0] < 0:
            raise UserError(f"block {index}: cannot keep heads {heads} of {total}", expected="at least one existing head per block")
        rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads]).to(attn.query.weight.device)
        for name in ("query", "key", "value"):
            setattr(attn, name, _sliced(getattr(attn, name), rows, 0))
        block_attention = blocks[index].attention
        block_attention.output.dense = _sliced(block_attention.output.dense, rows, 1)
        attn.num_attention_heads = len(heads)
        attn.all_head_size = len(heads) * size


class HeadGates:
    """Multiplicative gates ξ (one per head, 1.0) on every block's attention output, through a
    pre-hook on the output projection: ``∂loss/∂ξ_h`` is Michel et al.'s head importance."""

    def __init__(self, backbone):
        self.gates, self.handles = [], []
        for block in backbone.blocks():
            attn, out = _attention(block)
            gate = torch.ones(attn.query.out_features // attn.attention_head_size, requires_grad=True, device=out.weight.device)
            self.gates.append(gate)
            self.handles.append(out.register_forward_pre_hook(self._hook(gate, attn.attention_head_size)))

    @staticmethod
    def _hook(gate: torch.Tensor, size: int):
        def hook(_module, args):
            hidden = args[0]
            shaped = hidden.view(*hidden.shape[:-1], gate.numel(), size) * gate[:, None].to(hidden.dtype)
            return (shaped.view_as(hidden), *args[1:])
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def head_importance(model, backbone, batches: Iterable[dict], loss_fn) -> list[torch.Tensor]:
    """Per block, |∂L/∂ξ_h| summed over ``batches`` and L2-normalised within the block (Michel et
    al. 2019, §4.2: normalisation makes heads of different layers comparable)."""
    gates = HeadGates(backbone)
    scores = [torch.zeros_like(g) for g in gates.gates]
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)  # only the gates need gradients
    try:
        for batch in batches:
            loss = loss_fn(batch)
            grads = torch.autograd.grad(loss, gates.gates)
            for score, grad in zip(scores, grads):
                score += grad.detach().abs()
    finally:
        gates.remove()
        for p in params:
            p.requires_grad_(True)
    return [s / s.norm().clamp(min=1e-12) for s in scores]


def heads_to_keep(importance: list[torch.Tensor], fraction: float) -> dict[int, list[int]]:
    """Drop the globally least important ``fraction`` of heads, never a block's last one; returns
    block index -> heads kept, for the blocks that lose any."""
    ranked = sorted(((float(s), b, h) for b, scores in enumerate(importance) for h, s in enumerate(scores)))
    left = {b: len(scores) for b, scores in enumerate(importance)}
    target, dropped = round(fraction * sum(left.values())), set()
    for _score, b, h in ranked:
        if len(dropped) >= target:
            break
        if left[b] > 1:
            dropped.add((b, h))
            left[b] -= 1
    return {b: [h for h in range(len(scores)) if (b, h) not in dropped]
            for b, scores in enumerate(importance) if any((b, h) in dropped for h in range(len(scores)))}


def block_linears(backbone) -> list[tuple[str, nn.Linear]]:
    """(name relative to ``backbone.model``, layer) for every ``nn.Linear`` inside the blocks."""
    inside = {id(m) for block in backbone.blocks() for m in block.modules()}
    return [(name, m) for name, m in backbone.model.named_modules() if isinstance(m, nn.Linear) and id(m) in inside]


@torch.no_grad()
def magnitude_prune(backbone, sparsity: float) -> float:
    """Zero the ``sparsity`` share of the blocks' linear weights with the smallest magnitude (one
    global threshold, as in Han et al. 2015); returns the share actually zero."""
    weights = [m.weight for _, m in block_linears(backbone)]
    flat = torch.cat([w.detach().abs().flatten().float() for w in weights])
    k = int(sparsity * flat.numel())
    if k == 0:
        return 0.0
    threshold = flat.kthvalue(k).values
    zero = total = 0
    for w in weights:
        w.masked_fill_(w.abs() <= threshold, 0.0)
        zero, total = zero + int((w == 0).sum()), total + w.numel()
    return zero / total


def uniform_layer_map(student_blocks: int, teacher_blocks: int) -> list[int]:
    """Teacher block matched to each student block: student j <- teacher round((j+1) n_t / n_s) - 1
    (DistilBERT / TinyBERT's uniform strategy: the last student block meets the last teacher block)."""
    return [max(0, round((j + 1) * teacher_blocks / student_blocks) - 1) for j in range(student_blocks)]
