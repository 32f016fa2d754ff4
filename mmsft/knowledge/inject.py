"""One run's knowledge: its KB (leakage exclusions applied), retriever and alias linker, and what the
task kinds ask of them -- passages per sample (``retrieved_segments``) and linked entries with their
embeddings (``entity_links``).

Kinds hand rows over as views ``{"text", "source", ...}`` per split (``text`` is the query: the
sample's text, or a conversation's last user turn).  Retrieval results are cached on disk by the
KB's content, the retrieval settings and the exact rows, so repeated runs of a task retrieve once.
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Optional

import torch

from .. import paths
from ..atomic import write_json
from .config import KnowledgeSpec
from .kb import KnowledgeBase
from .leakage import held_out_entries, row_exclusions
from .retrieve import Hit

STATS: dict[str, dict] = {}  # task name -> its knowledge figures (KB size, blocked entries, ms per query), for reports


def open_knowledge(cfg, rows: dict[str, list[dict]]) -> Optional["TaskKnowledge"]:
    """The run's ``TaskKnowledge`` (None without a knowledge block), announced in one line."""
    from .config import active_inputs

    if cfg.knowledge is None:
        return None
    know = TaskKnowledge(cfg.knowledge, rows, cfg.name)
    STATS[cfg.name] = know.stats
    print(f"[mmsft] knowledge: KB {know.kb.name} ({len(know.kb):,} entries; {len(know.blocked)} blocked as validation/test "
          f"rows), inputs {', '.join(active_inputs(cfg))}")
    return know


def report_lines(cfg) -> list[str]:
    """A report's Knowledge section: the KB, what was kept out of reach, what retrieval cost."""
    from .config import active_inputs

    stats = STATS.get(cfg.name)
    if cfg.knowledge is None or not stats:
        return []
    r = cfg.knowledge.retrieval
    return ["## Knowledge\n",
            f"- KB `{stats['kb']}`: {stats['entries']:,} entries (content {stats['content_hash']}); {stats['blocked_held_out']} entries "
            "equal to, containing or made from validation/test rows are blocked; training rows never retrieve their own entries",
            f"- Inputs: {', '.join(active_inputs(cfg))}; retrieval {r.method}, k={r.k}, budget {r.budget} tokens, encoder {r.encoder}"
            + (f"; {stats['ms_per_query']} ms per query" if "ms_per_query" in stats else "")
            + (f"; {stats['linked_per_row']} linked entries per sample" if "linked_per_row" in stats else ""), ""]


class TaskKnowledge:
    def __init__(self, spec: KnowledgeSpec, rows: Optional[dict[str, list[dict]]] = None, task: str = ""):
        from .named import load_kb

        self.spec = spec
        self.kb: KnowledgeBase = load_kb(spec.kb, rows, task, self._chunk)
        self.blocked = held_out_entries(self.kb, rows)
        self.stats = {"kb": self.kb.name, "entries": len(self.kb), "blocked_held_out": len(self.blocked),
                      "content_hash": self.kb.content_hash[:16]}

    def _chunk(self, text: str) -> list[str]:
        from .encoder import load_encoder

        return load_encoder(self.spec.retrieval.encoder).chunker(self.spec.chunk.tokens, self.spec.chunk.overlap)(text)

    # -- retrieval -----------------------------------------------------------------------------
    @cached_property
    def retriever(self):
        import time

        from .retrieve import build_retriever

        r = self.spec.retrieval
        tick = time.perf_counter()
        retriever = build_retriever(self.kb, r.method, r.encoder, self.spec.index, r.query_max_length)
        retriever.blocked = self.blocked
        self.stats["index_seconds"] = round(time.perf_counter() - tick, 2)
        return retriever

    def signature(self) -> str:
        """What retrieved passages depend on (tokenized-cache keys)."""
        return hashlib.sha256(json.dumps([self.kb.content_hash, vars(self.spec.retrieval), vars(self.spec.linking),
                                          sorted(self.blocked)], default=str).encode()).hexdigest()[:16]

    def _cache_path(self, rows: list[dict], what: str):
        digest = hashlib.sha256(f"{self.signature()}\0{what}\0".encode())
        for row in rows:
            digest.update(f"{row['text']}\0{row.get('source', '')}\0".encode("utf-8", "replace"))
        return paths.cache_dir() / "knowledge" / "retrieved" / f"{digest.hexdigest()[:24]}.json"

    def search(self, rows: list[dict], k: Optional[int] = None, cache: bool = True) -> list[list[Hit]]:
        """Top-k hits per row, the row's own entries and the held-out ones excluded."""
        k = k or self.spec.retrieval.k
        path = self._cache_path(rows, f"search{k}") if cache and rows else None
        if path is not None and path.is_file():
            return [[Hit(i, self.kb.entries[i].id, s) for i, s in hits] for hits in json.loads(path.read_text())]
        found = self.retriever.search([r["text"] for r in rows], k, row_exclusions(self.kb, rows))
        self.stats["ms_per_query"] = round(self.retriever.ms_per_query, 3)
        if path is not None:
            write_json(path, [[[h.index, h.score] for h in hits] for hits in found], indent=None)
        return found

    def passages(self, hits: list[Hit]) -> list[str]:
        return [self.kb.entries[h.index].passage for h in hits]

    def shown(self, hits: list[Hit]) -> list[dict]:
        """What ``mmsft predict`` prints for the passages a sample used."""
        return [{"id": h.id, "score": h.score, "passage": self.kb.entries[h.index].passage} for h in hits]

    # -- entity links --------------------------------------------------------------------------
    @cached_property
    def linker(self):
        from .linking import AliasLinker

        return AliasLinker(self.kb, self.spec.linking.min_chars)

    @cached_property
    def entity_vectors(self) -> torch.Tensor:
        """(entries, dim) embeddings of every entry (the dense index's), what entity_memory attends to."""
        from .index import load_index

        return load_index(self.kb, self.spec.retrieval.encoder, self.spec.index).embeddings

    def links(self, rows: list[dict]) -> list[list[int]]:
        """Per row, linked entry indices (alias matches, topped up with retrieval hits when ``fill``)."""
        link = self.spec.linking
        exclude = row_exclusions(self.kb, rows)
        out = [[i for i in self.linker.link(r["text"], link.max_entities + len(ex)) if i not in ex and i not in self.blocked][: link.max_entities]
               for r, ex in zip(rows, exclude)]
        if link.fill:
            for ids, hits in zip(out, self.search(rows, link.fill)):
                ids += [h.index for h in hits if h.index not in ids][: max(0, link.fill - len(ids))]
        self.stats["linked_per_row"] = round(sum(map(len, out)) / max(len(out), 1), 2)
        return out


def fit_passages(passages: list[str], tokenizer, budget: int, reserve: int = 0) -> list[str]:
    """The passages, in order, cut to ``budget`` tokens of ``tokenizer`` in all (``reserve`` tokens
    per passage are kept for a separator); the last one kept is cut at a token boundary."""
    out, left = [], budget
    for passage in passages:
        left -= reserve
        if left <= 0:
            break
        offsets = tokenizer(passage, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) > left:
            passage = passage[: offsets[left - 1][1]]
        out.append(passage)
        left -= min(len(offsets), left)
    return out
