"""What a backbone hands to modules and heads: one ``Features`` shape for text, LM and image backbones.

Heads and modules say what they need beyond the final states in a ``FeatureRequest`` (the hidden
states of chosen blocks, vocabulary logits from some position on), so a backbone computes only what
someone reads: every layer's states cost memory, full-vocabulary logits cost a Gemma-sized matmul.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch


@dataclass
class FeatureRequest:
    hidden_layers: tuple[int, ...] = ()  # block indices whose outputs are wanted (negative: from the top)
    logits_from: Optional[int] = None  # LM backbones: vocabulary logits for positions >= this (None: none)
    # causal LMs: hand over those positions' final states and the output layer instead of their logits
    # (the loss then computes the logits chunk by chunk: ``mmsft.generation.chunked_loss``)
    logits_as_states: bool = False

    def merge(self, other: "FeatureRequest") -> "FeatureRequest":
        starts = [s for s in (self.logits_from, other.logits_from) if s is not None]
        wanting = [r.logits_as_states for r in (self, other) if r.logits_from is not None]
        return FeatureRequest(tuple(sorted({*self.hidden_layers, *other.hidden_layers})), min(starts) if starts else None,
                              bool(wanting) and all(wanting))


@dataclass
class Features:
    """``tokens``: (B, T, H) final token states (text and LM backbones) with ``attention_mask``;
    ``maps``: image feature maps of the backbone's ``out_indices`` with their ``strides``;
    ``hidden``: block index -> that block's output, for the requested blocks;
    ``logits``: LM backbones, the vocabulary logits of the requested trailing positions (with
    ``logits_as_states``: none; ``states`` holds those positions' final states and ``project`` maps
    states to logits);
    ``raw``: the wrapped model's own output object (e.g. BERT's ``pooler_output``);
    ``towers``: the features of the model's other backbones (an image beside a text), by tower name;
    ``joint``: set by a fusion module: ``joint(i, j)`` -> (P, width) joint representations of sample
    ``i[p]`` of this backbone with sample ``j[p]`` of the fused tower (paired rows: ``i == j``)."""

    tokens: Optional[torch.Tensor] = None
    attention_mask: Optional[torch.Tensor] = None
    maps: list[torch.Tensor] = field(default_factory=list)
    strides: list[int] = field(default_factory=list)
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)
    logits: Optional[torch.Tensor] = None
    states: Optional[torch.Tensor] = None
    project: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    raw: Any = None
    towers: dict[str, "Features"] = field(default_factory=dict)
    joint: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None

    @property
    def batch_size(self) -> int:
        ref = next(t for t in (self.tokens, self.maps[-1] if self.maps else None, self.logits, self.states) if t is not None)
        return int(ref.shape[0])
