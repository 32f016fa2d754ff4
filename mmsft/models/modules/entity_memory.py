"""``entity_memory``: cross-attention from token states to the KB entries linked in the text.

The task kind links entries by alias matching (``knowledge.inject: entity_links``, added on its own
when this module is used) and its collate passes their embeddings -- the KB's dense index vectors --
as ``knowledge_entities`` (B, M, D) with ``knowledge_entity_mask`` (B, M).  After block ``layer``
every token attends to a learned null slot plus those entries (projected to the block width), and
the result is added residually: ``h + attn(norm(h), memory)``.  The output projection starts at zero,
so the untrained module leaves the model unchanged; it trains with the task.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import UserError
from ...registry import MODULES
from .base import ModelModule, ModuleContext


@dataclass
class EntityMemoryOptions:
    layer: int = -1  # block after which the memory is read (negative: from the top)
    entity_dim: int = 384  # width of the KB entries' embeddings (the index encoder's; minilm-l6: 384)
    heads: int = 4
    dropout: float = 0.1
    trainable: bool = True

    def validate(self, path: str) -> None:
        if self.entity_dim < 1 or self.heads < 1:
            raise UserError("entity_dim and heads must be >= 1", where=path)
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}", where=f"{path}.dropout")


@MODULES.register("entity_memory")
class EntityMemory(ModelModule):
    Options = EntityMemoryOptions
    batch_keys = ("knowledge_entities", "knowledge_entity_mask")

    def __init__(self, backbone, options: EntityMemoryOptions):
        super().__init__(backbone, options)
        self.index = backbone.block_index(options.layer)
        width = backbone.block_width(self.index)
        if width % options.heads:
            raise UserError(f"heads={options.heads} does not divide the block width {width}", where="model.modules[entity_memory].options.heads")
        self.project = nn.Linear(options.entity_dim, width)
        self.null = nn.Parameter(torch.zeros(1, 1, width))  # attended when a text links nothing
        self.norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, options.heads, dropout=options.dropout, batch_first=True)
        nn.init.zeros_(self.attention.out_proj.weight)
        nn.init.zeros_(self.attention.out_proj.bias)

    def points(self) -> list[int]:
        return [self.index]

    def transform(self, index: int, hidden: torch.Tensor, context: ModuleContext) -> torch.Tensor:
        entities, mask = context.batch.get("knowledge_entities"), context.batch.get("knowledge_entity_mask")
        if entities is None or mask is None:
            raise UserError("entity_memory needs knowledge_entities in the batch", where="model.modules",
                            expected="a knowledge block (its entity_links input feeds this module)")
        if entities.shape[-1] != self.options.entity_dim:
            raise UserError(f"the KB embeddings are {entities.shape[-1]}-dimensional, entity_dim is {self.options.entity_dim}",
                            where="model.modules[entity_memory].options.entity_dim", expected=str(entities.shape[-1]))
        batch = hidden.shape[0]
        memory = torch.cat([self.null.expand(batch, 1, -1), self.project(entities.to(hidden.dtype))], 1)
        keep = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=hidden.device), mask.bool()], 1)
        read, _ = self.attention(self.norm(hidden), memory, memory, key_padding_mask=~keep, need_weights=False)
        return hidden + read
