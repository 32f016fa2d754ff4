"""Segments -> token ids and labels, and the collators that pad them.

Rules, each tested token by token:

* every target segment ends with the EOS id (appended when the text does not already end with it);
* labels are ``-100`` on prompt tokens (unless ``train_on_prompt``) and on padding;
* padding is located from the sequence lengths, never by comparing ids with ``pad_token_id``
  (SmolLM2's pad *is* its EOS, whose label must stay);
* one sample is one sequence, kept at its own length (no packing).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .templates import Segment

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    prompt_len: int  # where the last target starts: input_ids[:prompt_len] is the generation prompt


def tokenize(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids) if text else []


def encode(segments: list[Segment], tokenizer, eos_id: int, train_on_prompt: bool = False) -> Encoded:
    ids: list[int] = []
    labels: list[int] = []
    last_target = None
    for seg in segments:
        toks = tokenize(tokenizer, seg.text)
        if seg.target:
            if not toks or toks[-1] != eos_id:
                toks.append(eos_id)
            last_target = len(ids)
            labels += toks
        else:
            labels += toks if train_on_prompt else [IGNORE] * len(toks)
        ids += toks
    return Encoded(ids, labels, len(ids) if last_target is None else last_target)


def pad_left(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask) left-padded to the longest sequence (generation and causal training)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


def pad_right(sequences: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


class CausalCollator:
    """Left padding, so every target ends at the last position and the model can compute logits
    for the trailing target span only (``logits_to_keep``)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict:
        ids, mask = pad_left([it["input_ids"] for it in items], self.pad_id)
        labels = torch.full_like(ids, IGNORE)
        for row, it in enumerate(items):
            n = len(it["labels"])
            labels[row, ids.shape[1] - n:] = torch.tensor(it["labels"], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class Seq2SeqCollator:
    """Encoder inputs right-padded with an attention mask; labels right-padded with -100."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict:
        ids = pad_right([it["input_ids"] for it in items], self.pad_id)
        mask = pad_right([[1] * len(it["input_ids"]) for it in items], 0)
        return {"input_ids": ids, "attention_mask": mask, "labels": pad_right([it["labels"] for it in items], IGNORE)}
