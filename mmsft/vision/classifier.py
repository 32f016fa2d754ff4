"""Image classifier: an ``ImageBackbone``'s last feature map, average-pooled, into a ``HEADS`` entry
(``image_classification``, or any head taking (B, C) features such as ``classification``)."""
from __future__ import annotations

from typing import Optional

import torch

from ..models.base import TaskModel
from ..models.heads import HEADS


class ImageClassifier(TaskModel):
    def __init__(self, backbone, head: str, num_labels: int, dropout: float, hidden: int, loss_fn):
        backbone.out_indices = [len(backbone.stages) - 1]
        super().__init__(backbone, {"classification": HEADS.get(head)(backbone.channels[-1], num_labels, dropout, hidden)})
        self.loss_fn = loss_fn

    def forward(self, pixel_values: torch.Tensor, labels: Optional[torch.Tensor] = None) -> dict:
        logits = self.heads["classification"](self.backbone(pixel_values)[-1].mean((2, 3)))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = self.loss_fn(logits, labels)
        return out
