"""Text backbones (any Hugging Face encoder or decoder) and the classifier built on them."""
from __future__ import annotations

import os
from typing import Optional

import torch

from ..zoo import resolve
from .base import TaskModel
from .heads import HEADS, POOLERS


def load_text_backbone(name: str):
    """(backbone, tokenizer, zoo entry or None) from a zoo name, local folder or (online) hub id."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    resolved = resolve(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "weights not used" chatter for sentence-transformer checkpoints
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        backbone = AutoModel.from_pretrained(resolved.path)
    finally:
        hf_logging.set_verbosity(verbosity)
    return backbone, tokenizer, resolved.entry


def default_pooling(backbone, entry) -> str:
    if entry is not None and entry.family == "text_encoder":
        return entry.pooling
    return "last" if getattr(backbone.config, "is_decoder", False) or "CausalLM" in str(getattr(backbone.config, "architectures", "")) else "cls"


class TextClassifier(TaskModel):
    """Backbone -> pooling -> classification head.  ``encode`` is exposed so a frozen backbone's
    features can be computed once; ``forward(features=...)`` then trains the head alone."""

    def __init__(self, backbone, pooling: str, num_labels: int, dropout: float, head_hidden: int, loss_fn=None, head: str = "classification"):
        hidden = backbone.config.hidden_size
        super().__init__(backbone, {"classification": HEADS.get(head)(hidden, num_labels, dropout, head_hidden)})
        self.pooling = pooling
        self._pool = POOLERS.get(pooling)
        self.loss_fn = loss_fn

    def encode(self, input_ids, attention_mask, token_type_ids: Optional[torch.Tensor] = None, **_) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return self._pool(outputs.last_hidden_state, attention_mask, outputs)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, features=None) -> dict:
        if features is None:
            features = self.encode(input_ids, attention_mask, token_type_ids)
        logits = self.heads["classification"](features)
        out = {"logits": logits}
        if labels is not None and self.loss_fn is not None:
            out["loss"] = self.loss_fn(logits, labels)
        return out
