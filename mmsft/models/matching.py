"""The ``matching`` head: scores every (text, image) pair for cross-modal retrieval.

The score of a pair is a two-tower similarity -- text and image vectors projected to a shared space
and compared by cosine -- plus, with a fusion module, a linear read-out of the module's joint vector
(a cross-encoder over pooled vectors or attention cells).  The read-out starts at zero, so a fusion
module begins as the two-tower model and learns the interactions it can add.  Training is the
symmetric InfoNCE loss over the batch's pairs, several positives per row where two captions of one
image share a batch (``target``: the image id of each row).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..registry import HEADS
from .features import Features
from .heads import Head
from .pooling import pool_mean


@dataclass
class MatchingOptions:
    dim: int = 256  # shared embedding size of the two-tower read-out (no fusion module)
    temperature: float = 0.07  # initial softmax temperature (learned, as CLIP's logit scale)
    tower: str = "image"

    def validate(self, path: str) -> None:
        if self.dim < 1 or not 0 < self.temperature < 10:
            raise UserError(f"dim must be >= 1 and temperature in (0, 10), got {self.dim}, {self.temperature}", where=path)


@HEADS.register("matching")
class MatchingHead(Head):
    Options = MatchingOptions
    reads = "features"

    def __init__(self, backbone, options: MatchingOptions, tower_width: int, target: str = "pair_ids"):
        super().__init__(target)
        self.tower = options.tower
        self.read_out = nn.Linear(backbone.width, 1)  # joint vector -> score added to the two-tower one
        nn.init.zeros_(self.read_out.weight)
        nn.init.zeros_(self.read_out.bias)
        self.text_proj = nn.Linear(backbone.width, options.dim)
        self.image_proj = nn.Linear(tower_width, options.dim)
        self.log_scale = nn.Parameter(torch.tensor(float(-torch.log(torch.tensor(options.temperature)))))

    def pair_scores(self, features: Features) -> torch.Tensor:
        """(texts, images) scores of every text of ``features`` with every image of its tower."""
        other = features.towers[self.tower]
        n_text, n_image = features.batch_size, other.batch_size
        scale = self.log_scale.exp().clamp(max=100.0)
        text = nn.functional.normalize(self.text_proj(pool_mean(features.tokens, features.attention_mask)), dim=-1)
        image = nn.functional.normalize(self.image_proj(other.maps[-1].mean((2, 3))), dim=-1)
        scores = text @ image.T
        if features.joint is not None:
            i = torch.arange(n_text, device=scores.device).repeat_interleave(n_image)
            j = torch.arange(n_image, device=scores.device).repeat(n_text)
            scores = scores + self.read_out(features.joint(i, j)).view(n_text, n_image)
        return scores * scale

    def forward(self, features: Features, batch: dict) -> dict:
        return {"scores": self.pair_scores(features)}

    def loss(self, outputs: dict, batch: dict):
        ids = batch.get(self.target)
        if ids is None:
            return None
        scores = outputs["scores"]
        positive = (ids[:, None] == ids[None, :]).float()  # row i's image is column j's image
        log_t2i = scores.log_softmax(1)
        log_i2t = scores.log_softmax(0)
        t2i = -(torch.logsumexp(log_t2i.masked_fill(positive == 0, float("-inf")), 1)).mean()
        i2t = -(torch.logsumexp(log_i2t.masked_fill(positive == 0, float("-inf")), 0)).mean()
        return (t2i + i2t) / 2
