"""Special tokens for roles (``<|system|>``, ``<|user|>``, ``<|assistant|>``) and knowledge.

New tokens get new embedding rows.  Rows are initialised (deterministically) to the mean embedding
of a short description ("User:") rather than noise, so an untrained row already points somewhere
sensible; under LoRA the rows are trained through peft's ``trainable_token_indices``.
"""
from __future__ import annotations

import torch

ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
KNOWLEDGE_TOKEN = "<|knowledge|>"  # marks retrieved knowledge (used by the retrieval issue)
SPECIAL_TOKENS = {**ROLE_TOKENS, "knowledge": KNOWLEDGE_TOKEN}
INIT_TEXT = {"<|system|>": "System:", "<|user|>": "User:", "<|assistant|>": "Assistant:", KNOWLEDGE_TOKEN: "Knowledge:"}


def add_special_tokens(tokenizer) -> list[int]:
    """Add the role and knowledge tokens the tokenizer lacks; returns the ids of the added ones."""
    vocab = tokenizer.get_vocab()
    missing = [tok for tok in SPECIAL_TOKENS.values() if tok not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)  # never split, skipped when decoding
    return [int(i) for i in tokenizer.convert_tokens_to_ids(missing)]


def has_special_tokens(tokenizer) -> bool:
    vocab = tokenizer.get_vocab()
    return all(tok in vocab for tok in SPECIAL_TOKENS.values())


@torch.no_grad()
def resize_for_tokens(model, tokenizer, new_ids: list[int]) -> None:
    """Grow the embedding matrix (and an untied output matrix) to the tokenizer and init new rows."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    matrices = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != matrices[0].data_ptr():
        matrices.append(out.weight)
    for token_id in new_ids:
        text = INIT_TEXT.get(tokenizer.convert_ids_to_tokens(token_id), "")
        ids = tokenizer(text, add_special_tokens=False).input_ids if text else []
        for weight in matrices:
            source = weight[: min(rows, weight.shape[0])]
            weight[token_id] = source[ids].mean(0) if ids else source.mean(0)
