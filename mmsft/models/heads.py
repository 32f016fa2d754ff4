"""Heads: named task outputs on top of the shared backbone, each with its own loss (``HEADS``).

A head reads either a **pooled** vector per sample (``reads = "pooled"``: ``pool`` turns the
backbone's ``Features`` into it, which is what a frozen backbone's feature cache stores) or the
``Features`` themselves (``reads = "features"``: token states, logits, feature maps).  ``forward``
returns the head's outputs; ``loss`` scores them against the head's ``target`` batch key.  Options
are a dataclass per head type (``model.heads.<name>.options``), checked like every config block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

import torch
from torch import nn

from ..registry import HEADS, POOLERS
from .features import FeatureRequest, Features


@dataclass
class NoOptions:
    pass


class Head(nn.Module):
    """Subclasses set ``Options`` and ``reads`` and implement ``forward`` (and ``pool`` when pooled)."""

    Options: type = NoOptions
    reads: Literal["pooled", "features"] = "features"

    def __init__(self, target: str = "labels", loss_fn: Optional[Callable] = None):
        super().__init__()
        self.target = target  # batch key holding this head's labels
        self.loss_fn = loss_fn

    def request(self, batch: dict) -> FeatureRequest:
        """Features beyond the final states this head needs for ``batch``."""
        return FeatureRequest()

    def pool(self, features: Features, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs: Any, batch: dict) -> dict:
        raise NotImplementedError

    def loss(self, outputs: dict, batch: dict) -> Optional[torch.Tensor]:
        """The head's loss, or None when ``batch`` carries no labels for it."""
        if self.loss_fn is None or batch.get(self.target) is None:
            return None
        return self.loss_fn(outputs["logits"], batch[self.target])


def head_logits(outputs: dict) -> torch.Tensor:
    """A head's logits; an LM head whose loss path handed over states (``states`` + ``project``)
    gets them computed here, once."""
    if outputs.get("logits") is None:
        outputs["logits"] = outputs["project"](outputs["states"])
    return outputs["logits"]


def default_pooling(backbone) -> str:
    """The pooling a backbone was trained for: a zoo text encoder names it; decoders pool their last
    token; image backbones average their last feature map; other encoders use CLS."""
    entry = getattr(backbone, "entry", None)
    if backbone.family == "image":
        return "gap"
    if entry is not None and entry.family == "text_encoder":
        return entry.pooling
    config = getattr(backbone.model, "config", None)
    decoder = getattr(config, "is_decoder", False) or "CausalLM" in str(getattr(config, "architectures", ""))
    return "last" if decoder else "cls"


@dataclass
class ClassificationOptions:
    # auto: the backbone's own (see default_pooling); joint: a fusion module's joint vector of a sample's text and image
    pooling: Literal["auto", "cls", "mean", "pooler", "last", "gap", "joint"] = "auto"
    dropout: float = 0.1
    hidden: int = 0  # > 0 adds a hidden layer (GELU) before the output layer

    def validate(self, path: str) -> None:
        if not 0 <= self.dropout < 1:
            from ..errors import UserError

            raise UserError(f"dropout must be in [0, 1), got {self.dropout}", where=f"{path}.dropout")


@HEADS.register("classification")
class ClassificationHead(Head):
    """Pooled features -> dropout -> linear (or a small MLP) -> class logits."""

    Options = ClassificationOptions
    reads = "pooled"

    def __init__(self, backbone, options: ClassificationOptions, num_labels: int, loss_fn=None, target: str = "labels"):
        super().__init__(target, loss_fn)
        in_features = backbone.width
        layers: list[nn.Module] = [nn.Dropout(options.dropout)]
        if options.hidden:
            layers += [nn.Linear(in_features, options.hidden), nn.GELU(), nn.Dropout(options.dropout)]
            in_features = options.hidden
        layers.append(nn.Linear(in_features, num_labels))
        self.net = nn.Sequential(*layers)
        self.pooling = default_pooling(backbone) if options.pooling == "auto" else options.pooling
        if (self.pooling == "gap") != (backbone.family == "image"):
            from ..errors import UserError

            raise UserError(f"pooling '{self.pooling}' does not fit a {backbone.family} backbone", where="model.heads.*.options.pooling",
                            expected="gap for image backbones; cls, mean, last or pooler for token states")

    def pool(self, features: Features, batch: dict) -> torch.Tensor:
        if self.pooling == "gap":
            return features.maps[-1].mean((2, 3))
        if self.pooling == "joint":
            if features.joint is None:
                from ..errors import UserError

                raise UserError("pooling 'joint' needs a fusion module and the tower's inputs", where="model.heads.*.options.pooling",
                                expected="model.modules: [{type: late_concat | gated | cross_attention}]")
            rows = torch.arange(features.batch_size, device=features.tokens.device)
            return features.joint(rows, rows)
        return POOLERS.get(self.pooling)(features.tokens, features.attention_mask, features.raw)

    def forward(self, pooled: torch.Tensor, batch: dict) -> dict:
        return {"logits": self.net(pooled)}
