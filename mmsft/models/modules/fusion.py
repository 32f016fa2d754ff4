"""Fusion modules: join the backbone's features (a text) with a tower's (an image) into one vector.

Each sets ``features.joint(i, j)``: the joint representation of backbone sample ``i[p]`` with tower
sample ``j[p]``, width = the backbone's width.  Paired data uses ``i == j`` (a caption with its own
image, read by a head with ``pooling: joint``); retrieval scores every pair of a batch, or every
caption against every image at evaluation.

* ``late_concat``: mean-pooled text and average-pooled image concatenated, then a linear layer.
* ``gated``: a learned per-dimension gate mixes the text vector with the projected image vector.
* ``cross_attention``: the text tokens attend to the image's feature-map cells (one attention block
  with a residual), then the text tokens are mean-pooled.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import UserError
from ...registry import MODULES
from ..pooling import pool_mean
from .base import ModelModule


@dataclass
class FusionOptions:
    tower: str = "image"  # the tower whose features are fused with the backbone's
    dropout: float = 0.1
    heads: int = 4  # cross_attention: attention heads (must divide the backbone's width)
    trainable: bool = True

    def validate(self, path: str) -> None:
        if not 0 <= self.dropout < 1 or self.heads < 1:
            raise UserError(f"dropout must be in [0, 1) and heads >= 1, got {self.dropout}, {self.heads}", where=path)


class Fusion(ModelModule):
    Options = FusionOptions
    needs_towers = True

    def __init__(self, backbone, options: FusionOptions, towers: dict):
        super().__init__(backbone, options)
        if options.tower not in towers:
            raise UserError(f"fusion module needs the tower '{options.tower}', which the model lacks", where="model.modules",
                            expected="one of: " + (", ".join(towers) or "(no towers: set model.towers)"))
        self.fuses = options.tower
        self.width, self.other = backbone.width, towers[options.tower].width
        self.drop = nn.Dropout(options.dropout)

    def fuse(self, features) -> None:
        other = features.towers[self.fuses]
        features.joint = lambda i, j: self.join(features, other, i, j)

    def join(self, features, other, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@MODULES.register("late_concat")
class LateConcat(Fusion):
    def __init__(self, backbone, options: FusionOptions, towers: dict):
        super().__init__(backbone, options, towers)
        self.proj = nn.Linear(self.width + self.other, self.width)

    def join(self, features, other, i, j):
        text = pool_mean(features.tokens, features.attention_mask)
        image = other.maps[-1].mean((2, 3))
        return nn.functional.gelu(self.proj(self.drop(torch.cat([text[i], image[j]], -1))))


@MODULES.register("gated")
class Gated(Fusion):
    def __init__(self, backbone, options: FusionOptions, towers: dict):
        super().__init__(backbone, options, towers)
        self.image_proj = nn.Linear(self.other, self.width)
        self.gate = nn.Linear(2 * self.width, self.width)

    def join(self, features, other, i, j):
        text = pool_mean(features.tokens, features.attention_mask)[i]
        image = self.image_proj(self.drop(other.maps[-1].mean((2, 3))))[j]
        g = torch.sigmoid(self.gate(torch.cat([text, image], -1)))
        return g * text + (1 - g) * image


@MODULES.register("cross_attention")
class CrossAttention(Fusion):
    def __init__(self, backbone, options: FusionOptions, towers: dict):
        super().__init__(backbone, options, towers)
        if self.width % options.heads:
            raise UserError(f"heads={options.heads} does not divide the backbone's width {self.width}", where="model.modules")
        self.cells = nn.Linear(self.other, self.width)
        self.attention = nn.MultiheadAttention(self.width, options.heads, dropout=options.dropout, batch_first=True)
        self.norm = nn.LayerNorm(self.width)

    def join(self, features, other, i, j):
        cells = self.cells(other.maps[-1].flatten(2).transpose(1, 2))  # (B_img, cells, width)
        tokens, mask = features.tokens[i], features.attention_mask[i]
        attended, _ = self.attention(tokens, cells[j], cells[j], need_weights=False)
        return pool_mean(self.norm(tokens + self.drop(attended)), mask)
