"""The generative task model: a causal (or seq2seq) LM as the backbone and no separate head.

The LM head stays inside the backbone on purpose: both zoo LMs tie it to the input embeddings, so
new special-token rows train once for input and output, and a separate head would untie and copy
Gemma's 262k x 640 matrix.  ``heads`` is therefore empty (``TaskModel``'s "shared backbone,
separate heads" holds: a later head, e.g. a reward or intent head, can sit beside the LM).
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from ..models.base import TaskModel
from .encoding import IGNORE


def load_lm(name: str):
    """(model, tokenizer, zoo entry) for a zoo name or a local causal-LM / seq2seq folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from ..errors import UserError
    from ..zoo import resolve

    resolved = resolve(name)
    config = AutoConfig.from_pretrained(resolved.path)
    auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    try:
        model = auto.from_pretrained(resolved.path, dtype=torch.float32)
    except ValueError as exc:  # e.g. an encoder-only checkpoint
        raise UserError(f"cannot load a generative LM: {str(exc).splitlines()[0]}", where="model.backbone",
                        expected="a causal-LM or seq2seq checkpoint (smollm2-135m, gemma3-270m, T5, Marian, ...)") from None
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token", where="model.backbone", expected="a tokenizer with eos_token")
    if tokenizer.pad_token_id is None:  # only ever used under attention_mask == 0, never to find EOS
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, resolved.entry


def context_length(model, tokenizer) -> int | None:
    """Longest sequence the model handles (None: relative positions, no hard limit known)."""
    n = getattr(model.config, "max_position_embeddings", None)
    if n:
        return int(n)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 10**7 else None


class GenerativeLM(TaskModel):
    """``forward(input_ids, attention_mask, labels)`` -> ``{"loss", "tokens"}``; token-mean loss."""

    def __init__(self, backbone, label_smoothing: float = 0.0):
        super().__init__(backbone, {})
        self.label_smoothing = label_smoothing
        self.encoder_decoder = bool(backbone.config.is_encoder_decoder)
        accepted = inspect.signature(backbone.forward).parameters  # the bare HF model, before any adapter wraps it
        self._positions = "position_ids" in accepted  # ALiBi models (BLOOM) take none
        self._keep = "logits_to_keep" in accepted

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> dict:
        tokens = (labels != IGNORE).sum()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                               ignore_index=IGNORE, label_smoothing=self.label_smoothing)
        return {"loss": loss, "tokens": tokens}

    def forward(self, input_ids, attention_mask, labels=None) -> dict:
        if self.encoder_decoder:
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False)
            return self._loss(out.logits, labels) if labels is not None else {"logits": out.logits}
        kwargs = {}
        if self._positions:  # explicit positions: left padding must not shift the real tokens' positions
            kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        length = input_ids.shape[1]
        keep = length  # left padding puts every target at the end: logits are needed only from the first one on
        if labels is not None:
            valid = (labels != IGNORE).any(0)
            first = int(valid.float().argmax()) if bool(valid.any()) else length - 1
            keep = length - max(first, 1) + 1  # from the position before the first label
        if self._keep:
            kwargs["logits_to_keep"] = keep
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        logits = out.logits[:, -keep:]
        if labels is None:
            return {"logits": logits}
        return self._loss(logits[:, :-1], labels[:, length - keep + 1:])
