"""Knowledge inputs of text classification (``knowledge:`` in the task spec).

* ``retrieved_segments``: the top-k passages of the run's KB go before the text as
  ``<|knowledge|> passage ... [SEP] text``, cut to ``knowledge.retrieval.budget`` tokens, so the
  text keeps ``model.max_length - budget`` tokens at least; the knowledge token is added to the
  tokenizer (its embedding row trains under LoRA, like generation's role tokens).
* ``entity_links``: the entries linked in the text by alias matching; the collate turns their ids
  into ``knowledge_entities`` / ``knowledge_entity_mask`` (the KB's index vectors) for ``entity_memory``.

Retrieval runs once per split at ``prepare`` (a training row never retrieves itself, held-out rows
are never in reach: ``mmsft.knowledge.leakage``) and again per input at ``predict``.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...generation.tokens import KNOWLEDGE_TOKEN
from ...knowledge import active_inputs
from ...knowledge.inject import TaskKnowledge, fit_passages, open_knowledge

LINKS = "knowledge_entity_ids"


def rows_view(cfg, data) -> dict[str, list[dict]]:
    """{split: [{text, source, label name}]} of the loaded splits (what the KB side reads)."""
    out = {}
    for split, ds in data.items():
        sources = ds["source"] if "source" in ds.column_names else [f"{split}:{i}" for i in range(len(ds))]
        out[split] = [{"text": t, "source": s, "label": cfg.data.labels[y]} for t, s, y in zip(ds["text"], sources, ds["label"])]
    return out


def task_knowledge(cfg, data) -> Optional[TaskKnowledge]:
    return open_knowledge(cfg, rows_view(cfg, data)) if cfg.knowledge else None


def add_knowledge_token(cfg, backbone, tokenizer) -> None:
    """``<|knowledge|>`` added to the tokenizer and the embedding when passages are inserted."""
    if "retrieved_segments" not in active_inputs(cfg):
        return
    from ...generation.tokens import resize_for_tokens

    if KNOWLEDGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([KNOWLEDGE_TOKEN], special_tokens=True)
    new_ids = [int(tokenizer.convert_tokens_to_ids(KNOWLEDGE_TOKEN))]
    resize_for_tokens(backbone.model, tokenizer, new_ids)
    backbone.new_token_ids = new_ids


def columns(cfg, know: TaskKnowledge, tokenizer, rows: list[dict], cache: bool = True) -> dict:
    """Per row: the knowledge prefix (or ""), the linked entry ids, and the hits shown by predict."""
    inputs = active_inputs(cfg)
    out = {"prefix": [""] * len(rows), "links": [[] for _ in rows], "hits": [[] for _ in rows]}
    if "retrieved_segments" in inputs:
        sep = f"{tokenizer.sep_token} " if tokenizer.sep_token else ""
        out["hits"] = know.search(rows, cache=cache)
        budget = cfg.knowledge.retrieval.budget - (1 if sep else 0)
        out["prefix"] = ["".join(f"{KNOWLEDGE_TOKEN} {p} " for p in fit_passages(know.passages(h), tokenizer, budget, reserve=1)) + sep
                         for h in out["hits"]]
    if "entity_links" in inputs:
        out["links"] = know.links(rows)
    return out


def entity_batch(links: list[list[int]], vectors: torch.Tensor) -> dict:
    """Linked entry ids -> ``knowledge_entities`` (B, M, D) and ``knowledge_entity_mask`` (B, M)."""
    width = max(1, max(len(ids) for ids in links))
    entities = torch.zeros(len(links), width, vectors.shape[1])
    mask = torch.zeros(len(links), width, dtype=torch.bool)
    for row, ids in enumerate(links):
        if ids:
            entities[row, : len(ids)] = vectors[ids]
            mask[row, : len(ids)] = True
    return {"knowledge_entities": entities, "knowledge_entity_mask": mask}


class KnowledgeCollate:
    """The padding collate, plus the linked entries' embeddings when the run links entities."""

    def __init__(self, pad, know: TaskKnowledge, links: bool):
        self.pad, self.links = pad, links
        self.vectors = know.entity_vectors if links else None

    def __call__(self, items: list[dict]) -> dict:
        ids = [[int(i) for i in it.pop(LINKS, [])] for it in items]
        batch = self.pad(items)
        if self.links:
            batch.update(entity_batch(ids, self.vectors))
        return batch
